"""TRANSITIONAL: the family's LightningModules move here."""
from training.text_search.tasks import TASKS as MODULES  # noqa: F401
