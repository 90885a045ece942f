"""Fake omni.isaac."""
