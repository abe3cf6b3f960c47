"""Analyses of trained encoders' test-set features: modality gap and t-SNE (no torch)."""
