"""Lightning modules, one per task (moving into each family's module.py)."""
