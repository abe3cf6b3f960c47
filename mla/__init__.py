"""MLA reproduction pipeline."""
