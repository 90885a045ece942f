"""Fake ``omni`` namespace (Isaac Sim 2023.1.1 python): SimulationApp, omni.isaac.core guard, VecEnvBase."""
