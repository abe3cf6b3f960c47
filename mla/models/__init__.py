"""Encoders per modality (registry ``ENCODERS``) and heads."""
