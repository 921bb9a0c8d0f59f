"""Simulated training data (numpy + rasterio only)."""
