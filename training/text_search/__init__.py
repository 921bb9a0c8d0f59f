"""Text-based search over raster layers: CLIP-style image-text retrieval for remote sensing."""
