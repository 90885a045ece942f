"""Fake ``isaaclab_tasks.utils``."""
