"""Checks that need a CUDA device (marker ``cuda``): run by ``benchmarks/gpu_check.sh`` as ``pytest -m cuda``.

* the update eager, compiled without CUDA graphs and compiled with CUDA graphs (``train.compile=True`` on CUDA)
  give the same losses, parameters, target and actions (dropout off, so all three draw nothing);
* bf16 autocast (``train.amp=bf16``) on the device: bf16 matmuls, float32 loss, parameters and gradients,
  eager and CUDA graphs close;
* the replay buffer and the observation normaliser on the device: sampled rows are stored rows, statistics are
  the float64 moments of the data, neither reads anything on the host;
* the training loop on the synthetic device env issues no host synchronisation between log intervals, under
  ``torch.cuda.set_sync_debug_mode("error")`` (the CPU counterpart, which counts Python-level reads, is
  ``tests/test_no_host_sync.py``);
* a checkpoint written by a CUDA run loads on the CPU (every tensor on the CPU, the same weights, actions and next
  update).

Without a GPU every test here is skipped, except with ``MEOW_CUDA_TESTS_ON_CPU=1`` (``gpu_check.sh --cpu``), which
runs the same code on the CPU as a dry run of the tests themselves: there ``torch.compile`` is the identity
(compiling takes 20-70 s per graph on this project's CPU, and the CPU compiled path is ``tests/test_compile.py``'s),
the CUDA-graph variant is not built, and the host-sync guard makes every Python-level host read of a tensor
(``item``, ``tolist``, ``__bool__``, ...) raise instead.
"""

from __future__ import annotations

import contextlib
import os
from typing import Dict, Iterator, List

import pytest
import torch

from meow_isaac.agents.meow import MEowAgent, meow_loss
from meow_isaac.checkpoint import check_compatible, load_checkpoint
from meow_isaac.compile import Compiled, autocast
from meow_isaac.config import TrainConfig
from meow_isaac.envs.synthetic import SyntheticVecEnv
from meow_isaac.normalization import RunningObsNormalizer
from meow_isaac.replay import Batch, ReplayBuffer
from meow_isaac.trainer import Trainer
from test_no_host_sync import READS as HOST_READS, DeviceSyncOps

pytestmark = pytest.mark.cuda
DRY_RUN_ENV = "MEOW_CUDA_TESTS_ON_CPU"
OBS, ACT = 11, 3  # Hopper sizes


@pytest.fixture
def device(monkeypatch) -> torch.device:
    """``cuda`` where torch sees a GPU; the CPU (compile = identity) under ``MEOW_CUDA_TESTS_ON_CPU=1``; else
    the test is skipped."""
    if torch.cuda.is_available():
        torch._dynamo.reset()
        return torch.device("cuda")
    if os.environ.get(DRY_RUN_ENV) != "1":
        pytest.skip("needs a CUDA device: run by benchmarks/gpu_check.sh (pytest -m cuda); "
                    f"{DRY_RUN_ENV}=1 dry-runs these tests on the CPU")
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    return torch.device("cpu")


class HostSyncGuard:
    """While enabled, a host synchronisation raises: on CUDA ``torch.cuda.set_sync_debug_mode("error")``; on the
    CPU (dry run) every Python-level host read of a tensor (:data:`HOST_READS`) and every call that synchronises a
    CUDA device otherwise (:class:`test_no_host_sync.DeviceSyncOps`: e.g. a host scalar written by tensor index)
    raises ``RuntimeError``."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.enabled = device, False
        self._saved: Dict[str, object] = {}

    def enable(self) -> None:
        if self.enabled:
            return
        self.enabled = True
        if self.device.type == "cuda":
            self._saved["mode"] = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("error")
            return
        self._saved["ops"] = DeviceSyncOps(raise_on_sync=True)  # syncs without a Python-level read
        self._saved["ops"].__enter__()
        for name in HOST_READS:
            self._saved[name] = torch.Tensor.__dict__.get(name)  # None: inherited from torch._C.TensorBase

            def refuse(tensor, *args, _name=name, **kwargs):
                raise RuntimeError(f"host read Tensor.{_name} while the host-sync guard is on")

            setattr(torch.Tensor, name, refuse)

    def disable(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        if self.device.type == "cuda":
            torch.cuda.set_sync_debug_mode(self._saved.pop("mode"))
            return
        self._saved.pop("ops").__exit__(None, None, None)
        for name in HOST_READS:
            original = self._saved.pop(name)
            if original is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)


@contextlib.contextmanager
def no_host_sync(device: torch.device) -> Iterator[None]:
    guard = HostSyncGuard(device)
    guard.enable()
    try:
        yield
    finally:
        guard.disable()


def test_the_guard_refuses_a_host_read(device):
    x = torch.ones(3, device=device)
    with pytest.raises(RuntimeError):
        with no_host_sync(device):
            x.sum().item()
    assert x.sum().item() == 3.0  # disabled again afterwards


def _variants(device: torch.device) -> List[str]:
    return ["eager", "compiled_nograph", "compiled"] if device.type == "cuda" else ["eager", "compiled"]


def _agent(device: torch.device, variant: str = "eager", amp: str = "none", dropout: float = 0.0,
           **kwargs) -> MEowAgent:
    """``MEowAgent`` at seed 0. ``compiled``: ``compile=True`` (on CUDA: the loss and the acting path as CUDA
    graphs); ``compiled_nograph``: the same with the loss compiled without CUDA graphs (as
    ``benchmarks/bench_update.py``'s variant); on the CPU (dry run) the compiled agent takes the CUDA path too
    (compiled loss, eager Adam) instead of the CPU's one-graph update."""
    torch.manual_seed(0)
    agent = MEowAgent(OBS, ACT, device, alpha=0.25, tau=0.05, dropout=dropout, compile=variant != "eager", amp=amp,
                      **kwargs)
    if variant != "eager" and device.type == "cpu":
        agent._fused = None
    if variant == "compiled_nograph":
        agent._loss_fn = Compiled(meow_loss, device, "the MEow loss (no CUDA graphs)", fixed_args=("policy", "target"),
                                  cudagraphs=False)
    return agent


def _batch(seed: int, device: torch.device, b: int = 256) -> Batch:
    g = torch.Generator().manual_seed(seed)
    batch = Batch(obs=torch.randn(b, OBS, generator=g), action=torch.rand(b, ACT, generator=g) * 1.9 - 0.95,
                  reward=torch.randn(b, generator=g), next_obs=torch.randn(b, OBS, generator=g),
                  terminated=(torch.rand(b, generator=g) < 0.1).float())
    return Batch(*(t.to(device) for t in batch))


def _relative_to_change(a: torch.Tensor, b: torch.Tensor, start: torch.Tensor) -> float:
    """``|a - b| / |b - start|``: the difference of two trained parameter vectors against what training moved
    (robust to the few coordinates whose tiny gradient is rounding noise, where Adam's step is +-lr either way)."""
    return float((a - b).norm() / (b - start).norm())


def test_update_eager_compiled_and_cuda_graphs_agree(device):
    variants = _variants(device)
    agents = {v: _agent(device, v) for v in variants}
    if device.type == "cuda":
        assert agents["compiled"]._loss_fn.cudagraphs and not agents["compiled_nograph"]._loss_fn.cudagraphs
    assert all(a.compiled for v, a in agents.items() if v != "eager")
    start = agents["eager"]._flat.data.clone()
    target_start = agents["eager"]._target_flat.data.clone()
    for step in range(5):
        batch = _batch(step, device)
        # clone at once: a CUDA-graph call's outputs are overwritten by its next call
        metrics = {v: {k: t.clone() for k, t in a.update(batch).items()} for v, a in agents.items()}
        for v in variants[1:]:
            for key in ("losses/loss", "losses/grad_norm", "values/target_y"):
                torch.testing.assert_close(metrics[v][key], metrics["eager"][key], rtol=1e-4, atol=1e-5,
                                           msg=lambda m: f"{v} step {step} {key}: {m}")
            assert float(metrics[v]["faults/update_skipped"]) == 0.0
    eager = agents["eager"]
    for v in variants[1:]:
        assert _relative_to_change(agents[v]._flat.data, eager._flat.data, start) < 1e-3, v
        assert _relative_to_change(agents[v]._target_flat.data, eager._target_flat.data, target_start) < 1e-3, v
    obs = torch.randn(7, OBS, device=device)
    for v in variants[1:]:
        torch.testing.assert_close(agents[v].act(obs, deterministic=True), eager.act(obs, deterministic=True),
                                   rtol=1e-4, atol=1e-5)
        action = agents[v].act(obs)
        assert action.shape == (7, ACT) and action.device == obs.device and bool((action.abs() <= 1).all())


def test_bf16_autocast_on_the_device(device):
    x = torch.randn(8, 8, device=device)
    with autocast("bf16", device):
        assert (x @ x).dtype == torch.bfloat16
    fp32, bf16 = _agent(device), _agent(device, amp="bf16")
    batch = _batch(0, device)
    loss32 = fp32.update(batch)["losses/loss"].clone()
    loss16 = bf16.update(batch)["losses/loss"].clone()
    assert loss16.dtype == torch.float32 and bool(torch.isfinite(loss16))
    assert abs(float(loss16) - float(loss32)) < 0.05 * abs(float(loss32)) + 1e-3
    assert all(p.dtype == torch.float32 for p in bf16.policy.parameters())
    assert bf16._flat.grad.dtype == torch.float32 and bool(torch.isfinite(bf16._flat.grad).all())
    assert not torch.equal(fp32._flat.data, bf16._flat.data)  # bf16 matmuls round differently
    compiled = _agent(device, "compiled", amp="bf16")
    eager = _agent(device, amp="bf16")
    for step in range(3):
        batch = _batch(step, device)
        got = compiled.update(batch)["losses/loss"].clone()
        want = eager.update(batch)["losses/loss"].clone()
        torch.testing.assert_close(got, want, rtol=2e-2, atol=1e-3)


def test_replay_buffer_on_the_device_samples_stored_rows_without_host_reads(device):
    num_envs, slots, steps = 4, 5, 9
    replay = ReplayBuffer(num_envs, slots, obs_dim=3, action_dim=2, device=device)
    stored: Dict[int, List[float]] = {e: [] for e in range(num_envs)}  # row ids per env, oldest first
    for step in range(steps):
        ids = torch.tensor([100.0 * step + e for e in range(num_envs)])
        valid = torch.tensor([not (e == 1 and step % 3 == 0) for e in range(num_envs)])  # env 1 drops some rows
        obs = torch.stack((ids, torch.zeros(num_envs), torch.ones(num_envs)), 1)
        action = torch.stack((ids / 1000, -ids / 1000), 1)
        row = [t.to(device) for t in (obs, action, ids + 0.5, obs + 0.25, ids % 2 == 0, valid)]  # (a pageable
        with no_host_sync(device):  # host-to-device copy synchronises: done before the guard)
            replay.add(*row)
        for e in range(num_envs):
            if valid[e]:
                stored[e] = (stored[e] + [float(ids[e])])[-slots:]
    with no_host_sync(device):
        batch = replay.sample(512)
        size = replay.size()
    assert all(t.device == replay.obs.device and t.dtype == torch.float32 for t in batch)
    assert int(size) == sum(len(v) for v in stored.values())
    keep = {i for rows in stored.values() for i in rows}
    ids = batch.obs[:, 0].cpu()
    assert set(ids.tolist()) <= keep and len(set(ids.tolist())) > len(keep) // 2
    torch.testing.assert_close(batch.reward.cpu(), ids + 0.5)
    torch.testing.assert_close(batch.next_obs[:, 0].cpu(), ids + 0.25)
    torch.testing.assert_close(batch.action[:, 0].cpu(), ids / 1000)
    torch.testing.assert_close(batch.terminated.cpu(), (ids % 2 == 0).float())


def test_normaliser_on_the_device_keeps_float64_moments_without_host_reads(device):
    g = torch.Generator().manual_seed(3)
    chunks = [torch.randn(n, 3, generator=g) * torch.tensor([1.0, 10.0, 0.1]) + torch.tensor([5.0, -2.0, 0.0])
              for n in (7, 64, 1, 300)]
    norm = RunningObsNormalizer(3).to(device)
    on_device = [chunk.to(device) for chunk in chunks]
    with no_host_sync(device):
        for chunk in on_device:
            norm.update(chunk)
        out = norm(on_device[0])
    data = torch.cat(chunks).double()
    assert norm.mean.device.type == out.device.type == device.type and norm.mean.dtype == torch.float64
    torch.testing.assert_close(norm.mean.cpu(), data.mean(0), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(norm.var.cpu(), data.var(0, unbiased=False), rtol=1e-9, atol=1e-10)
    assert float(norm.count) == len(data)
    want = ((chunks[0].double() - data.mean(0)) / torch.sqrt(data.var(0, unbiased=False) + 1e-8)).clamp(-5, 5)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.cpu(), want.float(), rtol=1e-5, atol=1e-5)


def _synthetic_trainer(device: torch.device, tmp_path, num_envs: int, cfg: TrainConfig, name: str,
                       **agent_kwargs) -> Trainer:
    env = SyntheticVecEnv(num_envs, obs_dim=OBS, action_dim=ACT, max_episode_length=30, device=device)
    agent = MEowAgent(OBS, ACT, device, normalize_input=True, **agent_kwargs)
    return Trainer(env, lambda: SyntheticVecEnv(2, OBS, ACT, 30, device=device), agent, cfg, tmp_path, None, name,
                   device, show_progress=False)


def test_training_loop_on_the_device_has_no_host_sync_between_log_intervals(device, tmp_path):
    """Synthetic device env, ``train.compile=auto`` (CUDA graphs on CUDA), 2 updates per step. The guard is on
    from the first log interval (after the compiling and CUDA-graph recording of the first calls) to the end,
    except inside each log interval's own host read."""
    cfg = TrainConfig(batch_size=128, replay_size_per_env=100, random_steps=5, learning_starts=5,
                      max_iterations=10**9, log_interval=40, eval_interval=0, save_interval=10**9,
                      normalize_input=True, updates_per_step=2)
    trainer = _synthetic_trainer(device, tmp_path, 64, cfg, "sync")
    assert trainer.agent.compiled is (device.type == "cuda")
    guard, logs = HostSyncGuard(device), []
    original_log, original_add = trainer._log, trainer.replay.add

    def log(*args):
        guard.disable()
        logs.append(original_log(*args))
        guard.enable()
        return logs[-1]

    def add_then_stop(*args):
        original_add(*args)
        trainer.stop_requested = trainer.replay.num_adds >= 130

    trainer._log = log  # type: ignore[assignment]
    trainer.replay.add = add_then_stop  # type: ignore[assignment]
    trainer.save = lambda path: path  # type: ignore[assignment]  # the final checkpoint is not the hot loop
    try:
        trainer.train()
    finally:
        guard.disable()
    assert trainer.iteration == 130 and trainer.updates == 2 * (130 - 5 + 1)
    assert len(logs) == 3  # iterations 40, 80, 120; 121-130 ran guarded after the last one
    for scalars in logs:
        assert scalars["faults/update_skipped"] == 0.0 and torch.isfinite(torch.tensor(scalars["losses/loss"]))
    assert any(s.get("episode/count", 0) > 0 for s in logs)  # episodes (30 steps) ended and were counted


def _tensors(tree) -> Iterator[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for value in tree.values():
            yield from _tensors(value)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            yield from _tensors(value)


def test_checkpoint_written_on_the_device_loads_on_the_cpu(device, tmp_path):
    cfg = TrainConfig(batch_size=64, replay_size_per_env=50, random_steps=5, learning_starts=5, max_iterations=40,
                      log_interval=20, eval_interval=0, save_interval=10**9, normalize_input=True)
    trainer = _synthetic_trainer(device, tmp_path, 16, cfg, "ckpt", dropout=0.0)
    trainer.train()  # ends with an evaluation and the 'last' checkpoint
    agent, path = trainer.agent, trainer.checkpoint_path("last")
    state = load_checkpoint(path, map_location="cpu")
    assert all(t.device.type == "cpu" for t in _tensors(state))
    cpu_agent = MEowAgent(OBS, ACT, torch.device("cpu"), normalize_input=True, dropout=0.0, compile=False)
    check_compatible(state, path, trainer.run_meta(), cpu_agent.state_dict())
    cpu_agent.load_state_dict(state["agent"])
    cpu_agent.load_optimizer_state_dict(state["optimizer"])
    for key, value in agent.state_dict().items():
        torch.testing.assert_close(cpu_agent.state_dict()[key], value.cpu(), rtol=0, atol=0, msg=key)
    cpu_state = cpu_agent.optimizer_state_dict()["state"]
    assert int(cpu_state[0]["step"]) == trainer.updates == 40 - 5 + 1
    for i, entry in agent.optimizer_state_dict()["state"].items():
        torch.testing.assert_close(cpu_state[i]["exp_avg_sq"], entry["exp_avg_sq"].cpu(), rtol=0, atol=0)
    obs = torch.randn(9, OBS)
    torch.testing.assert_close(cpu_agent.act(obs, deterministic=True),
                               agent.act(obs.to(device), deterministic=True).cpu(), rtol=1e-4, atol=1e-5)
    # the next update from the loaded state is the device's next update (dropout off: nothing is drawn)
    start = cpu_agent._flat.data.clone()
    batch = _batch(7, torch.device("cpu"), b=64)
    loss_cpu = cpu_agent.update(batch)["losses/loss"]
    loss_dev = agent.update(Batch(*(t.to(device) for t in batch)))["losses/loss"].clone()
    torch.testing.assert_close(loss_cpu, loss_dev.cpu(), rtol=1e-4, atol=1e-5)
    assert _relative_to_change(agent._flat.data.cpu(), cpu_agent._flat.data, start) < 1e-2
