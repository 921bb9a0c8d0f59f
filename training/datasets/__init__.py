"""Datasets in torchgeo style; ``magicbathynet_format`` holds the on-disk conventions without torch."""
