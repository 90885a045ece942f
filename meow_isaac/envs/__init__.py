"""Simulator backends. Every backend returns the :class:`StepOut` contract of ``DESIGN.md``."""

from meow_isaac.envs.contract import StepOut, VecEnv

__all__ = ["StepOut", "VecEnv"]
