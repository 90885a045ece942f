"""Shared pytest setup: CPU only, one torch thread (the machine is small and shared)."""

import importlib.metadata
import os

import pytest
import torch

import meow_isaac  # noqa: F401  (chooses MUJOCO_GL before any test imports mujoco)

os.environ.setdefault("WANDB_MODE", "offline")
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


# Skips that are meant, in one place. Any other skip fails the test (or the module, for a skip at collection):
# a test skipped because a dependency that .ci/run installs is missing counts as a failure.
MEANT_SKIP_MARKERS = ("cuda",)          # GPU-only tests on a machine without CUDA
MEANT_SKIP_REASONS = (                  # the start of the skip reason (after pytest's "Skipped: ")
    "glibc mallopt",                    # tests/test_flat.py: Linux only
    "this machine has a cuda:7",        # tests/test_bad_config.py: needs a device index that does not exist
    "no offscreen OpenGL backend",      # tests/test_view.py: EGL/OSMesa are system libraries, not pip-installed
)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def _unexpected_skip(report, markers=()) -> None:
    """Turn a skipped ``report`` into a failure unless a marker or its reason is in the lists above."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if any(m in markers for m in MEANT_SKIP_MARKERS) or reason.startswith(MEANT_SKIP_REASONS):
        return
    report.outcome = "failed"
    report.longrepr = (f"unexpected skip: {reason!r}. A skip is only meant for a marker in {MEANT_SKIP_MARKERS} or "
                       "a reason in MEANT_SKIP_REASONS (tests/conftest.py); install what is missing.")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _unexpected_skip(outcome.get_result(), {m.name for m in item.iter_markers()})


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _unexpected_skip(outcome.get_result())


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
