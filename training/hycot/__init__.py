"""HyCoT learned hyperspectral compression on HySpecNet-11k: fit, evaluate, export and the importer of the
authors' published weights (CLI in ``cli``)."""
