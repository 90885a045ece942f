"""Fake ``omni.isaac.core``: importable only once the SimulationApp runs (Kit extensions load with the app)."""

from omni.isaac.kit import SimulationApp

if SimulationApp.running is None:
    raise ImportError("fake omni.isaac.core: imported before the SimulationApp started; create the "
                      "VecEnvBase/VecEnvRLGames (which starts it) before importing tasks")
