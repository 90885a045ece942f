"""meow-isaac: massively parallel MEow (Chao et al., NeurIPS 2024, arXiv:2405.13629) for Isaac and MuJoCo."""

import os

# Offscreen rendering (videos, task previews) without a display: must be chosen before mujoco is imported.
os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"
