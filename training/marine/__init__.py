"""MagicBathyNet's models (bathymetry and seabed classes): importers of the authors' published weights."""
