"""TRANSITIONAL: the family's LightningModules move here."""
from training.tasks.bathymetry import BathymetryTask
from training.tasks.seabed import SeabedTask

MODULES = {"bathymetry": BathymetryTask, "seabed": SeabedTask}
