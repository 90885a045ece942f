"""Shared pytest setup: CPU only, one torch thread (the machine is small and shared)."""

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("MUJOCO_GL", "egl")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
    yield


def pytest_configure(config):
    # Markers of the tests that need more than this CPU machine; each is skipped (or deselected) where its
    # requirement is absent, and run by the stage that provides it.
    config.addinivalue_line("markers", "cuda: needs a CUDA device (benchmarks/gpu_check.sh runs `pytest -m cuda`)")
    config.addinivalue_line("markers", "isaaclab3: runs against the real Isaac Lab 3 in its own Python 3.12 venv "
                                       "(scripts/ci_isaaclab3.sh)")
    config.addinivalue_line("markers", "mjwarp: needs mujoco-warp and warp-lang (the `mjwarp` extra)")
