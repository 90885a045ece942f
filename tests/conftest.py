"""Shared pytest setup: CPU only, one torch thread (the machine is small and shared)."""

import importlib.metadata
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


def _real_isaaclab3() -> bool:
    try:
        return importlib.metadata.version("isaaclab").startswith("3.")
    except importlib.metadata.PackageNotFoundError:
        return False


def pytest_collection_modifyitems(config, items):
    # `isaaclab3` tests run only where the real Isaac Lab 3 is installed (scripts/ci_isaaclab3.sh, its own Python
    # 3.12 venv): deselected elsewhere, not skipped. The stage runs `pytest -m isaaclab3`, which exits 5 (a CI
    # failure) if they were deselected there.
    if _real_isaaclab3():
        return
    keep = [item for item in items if item.get_closest_marker("isaaclab3") is None]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep
