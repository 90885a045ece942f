"""Fake ``SimConfig`` (reads the keys the real one reads first)."""


class SimConfig:
    def __init__(self, config):
        self._config = config
        self._cfg = config.get("task", {})
        _ = config["test"], config["headless"], config["enable_livestream"]  # KeyError if missing
        gpu = self._cfg["sim"]["use_gpu_pipeline"]
        self._config["sim_device"] = f"cuda:{config['device_id']}" if gpu else "cpu"

    @property
    def config(self):
        return self._config

    @property
    def task_config(self):
        return self._cfg

    def get_physics_params(self):
        return {"rendering_dt": 1.0 / 60.0, "dt": 1.0 / 60.0}
