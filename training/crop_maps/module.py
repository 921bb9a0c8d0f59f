"""TRANSITIONAL: the family's LightningModules move here."""
from training.tasks.crop import CropMappingTask

MODULES = {"crop": CropMappingTask}
