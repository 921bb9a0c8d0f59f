"""Processing algorithms: one per file, all sharing raster_model_algorithm's parameters."""
