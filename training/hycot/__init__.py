"""HyCoT learned hyperspectral compression on HySpecNet-11k: fit, evaluate, export and the importer of the
authors' published weights (CLI in ``cli``), the paper's bit rates (``bit_rate``) and the training-free PCA
codec baseline (``pca_codec``)."""
