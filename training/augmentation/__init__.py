"""Augmentations for multi-label scene classification and their physical-consistency check."""
