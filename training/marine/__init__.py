"""MagicBathyNet bathymetry and seabed classes (Agrafiotis et al., IGARSS 2024): fit, evaluate, export and the
importers of the authors' published weights (CLI in ``cli``; the simulator the shipped models were trained on
is ``training/simulation/shallow_water.py``)."""
