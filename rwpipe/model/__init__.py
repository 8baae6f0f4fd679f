"""Model directories: materialising `model.source` and the tiny test models."""
