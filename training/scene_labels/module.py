"""TRANSITIONAL: the family's LightningModules move here."""
from training.tasks.scene_labels import SceneLabelsTask

MODULES = {"scene-labels": SceneLabelsTask}
