"""Fake ``omni.isaac.kit.SimulationApp``: one per process; ``omni.isaac.core`` needs it running."""


class SimulationApp:
    running = None

    def __init__(self, launch_config=None, experience=""):
        if SimulationApp.running is not None:
            raise RuntimeError("fake SimulationApp: an app is already running in this process")
        SimulationApp.running = self
        self.config = dict(launch_config or {})

    def close(self):
        if SimulationApp.running is self:
            SimulationApp.running = None
