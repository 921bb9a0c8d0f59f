"""TRANSITIONAL: the family's LightningModules move here."""
from training.tasks.hycot import HyCoTTask

MODULES = {"hycot": HyCoTTask}
