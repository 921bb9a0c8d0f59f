"""Lightning modules, one per task; ``TASKS`` maps the CLI's task names to them."""
from training.tasks.bathymetry import BathymetryTask
from training.tasks.crop import CropMappingTask
from training.tasks.scene_labels import SceneLabelsTask
from training.tasks.seabed import SeabedTask

TASKS = {
    "bathymetry": BathymetryTask,
    "seabed": SeabedTask,
    "scene-labels": SceneLabelsTask,
    "crop": CropMappingTask,
}
