"""Fake omni.isaac.gym."""
