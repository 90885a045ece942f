"""Fake ``omni.isaac.gym.vec_env.VecEnvBase`` as shipped in Isaac Sim 2023.1.1 (no ``enable_signal``)."""

import signal
import sys

from omni.isaac.kit import SimulationApp


class VecEnvBase:
    def __init__(self, headless, sim_device=0, enable_livestream=False, enable_viewport=False,
                 launch_simulation_app=True, experience=None):
        self._simulation_app = SimulationApp({"headless": headless, "physics_gpu": sim_device},
                                             experience=experience or "")
        # Stock behaviour: raises ValueError off the main thread ("signal only works in main thread").
        try:
            self._previous_sigint = signal.signal(signal.SIGINT, self.signal_handler)
        except BaseException:
            self._simulation_app.close()
            raise
        self._render = not headless
        self._task = None

    def signal_handler(self, sig, frame):
        self.close()
        sys.exit()

    def set_task(self, task, backend="numpy", sim_params=None, init_sim=True, rendering_dt=1.0 / 60.0):
        self._task = task
        self._num_envs = task.num_envs
        self.observation_space = task.observation_space
        self.action_space = task.action_space
        if init_sim:
            task.post_reset()  # World.reset()

    @property
    def task(self):
        return self._task

    @property
    def num_envs(self):
        return self._num_envs

    def close(self):
        if getattr(self, "_previous_sigint", None) is not None:
            try:
                signal.signal(signal.SIGINT, self._previous_sigint)
            except ValueError:
                pass
            self._previous_sigint = None
        self._simulation_app.close()
