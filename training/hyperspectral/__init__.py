"""Learned hyperspectral compression (HyCoT): importer of the authors' published weights."""
