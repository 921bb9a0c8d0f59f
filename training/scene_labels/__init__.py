"""reBEN scene multi-labels: prepare, fit, evaluate, export and federated training (CLI in ``cli``)."""
