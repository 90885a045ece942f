"""train.compile / train.amp: the compiled update and acting path compute what the eager ones do; switches
validate; a compiler failure falls back to eager with one warning line instead of stopping the run."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo.exc as dynamo_exc

from meow_isaac.agents.meow import MEowAgent
from meow_isaac.compile import Compiled, autocast, resolve_compile
from meow_isaac.config import ConfigError, TrainConfig
from meow_isaac.replay import Batch

CPU = torch.device("cpu")


def _batch(seed: int, b: int = 64, obs_dim: int = 5, action_dim: int = 2) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(obs=torch.randn(b, obs_dim, generator=g), action=torch.rand(b, action_dim, generator=g) * 1.9 - 0.95,
                 reward=torch.randn(b, generator=g), next_obs=torch.randn(b, obs_dim, generator=g),
                 terminated=(torch.rand(b, generator=g) < 0.1).float())


def _agent(dropout: float = 0.0, **kwargs) -> MEowAgent:
    torch.manual_seed(0)
    return MEowAgent(5, 2, CPU, alpha=0.2, tau=0.1, dropout=dropout, **kwargs)


def _update_at_seed(agent: MEowAgent, batch: Batch, seed: int) -> dict:
    torch.manual_seed(seed)  # same generator state: the dropout masks must be the same draws
    return agent.update(batch)


def test_compiled_update_and_act_match_eager():
    """With coupling dropout on: the compiled update's predrawn masks are the eager pass's masks."""
    torch._dynamo.reset()
    eager, compiled = _agent(dropout=0.1, compile=False), _agent(dropout=0.1, compile=True)
    assert compiled.compiled and not eager.compiled
    for step in range(3):
        m_eager, m_comp = _update_at_seed(eager, _batch(step), step), _update_at_seed(compiled, _batch(step), step)
        torch.testing.assert_close(m_comp["losses/loss"], m_eager["losses/loss"], rtol=1e-4, atol=1e-5)
    for p_eager, p_comp in zip(eager.policy.parameters(), compiled.policy.parameters()):
        torch.testing.assert_close(p_comp, p_eager, rtol=1e-4, atol=1e-5)
    for p_eager, p_comp in zip(eager.target.parameters(), compiled.target.parameters()):
        torch.testing.assert_close(p_comp, p_eager, rtol=1e-4, atol=1e-5)
    obs = torch.randn(7, 5)
    torch.testing.assert_close(compiled.act(obs, deterministic=True), eager.act(obs, deterministic=True),
                               rtol=1e-4, atol=1e-5)
    assert compiled.act(obs).shape == (7, 2)


def _assert_same_state(a: MEowAgent, b: MEowAgent) -> None:
    for net in ("policy", "target"):
        for p_a, p_b in zip(getattr(a, net).parameters(), getattr(b, net).parameters()):
            torch.testing.assert_close(p_a, p_b, rtol=1e-4, atol=1e-5)
    state_a, state_b = a.optimizer_state_dict()["state"], b.optimizer_state_dict()["state"]
    assert state_a.keys() == state_b.keys() and state_a
    for i in state_a:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            # rtol 1e-3: the fused graph rounds the Swish gradients differently (seen: 3.4e-4 on 1 of 128 entries)
            torch.testing.assert_close(state_a[i][key], state_b[i][key], rtol=1e-3, atol=1e-6)


def test_fused_cpu_update_is_the_eager_update_with_adam_state_lr_changes_and_skips():
    """The compiled CPU update is one graph (loss, gradient, clipping, Adam, Polyak): same parameters, Adam
    moments and step counter as the eager update; a learning-rate change is seen; a non-finite batch is skipped
    by both; the clipped gradient is left in ``.grad`` as the eager update leaves it."""
    torch._dynamo.reset()
    eager, fused = _agent(dropout=0.1, compile=False), _agent(dropout=0.1, compile=True)
    assert fused._fused is not None and eager._fused is None
    betas = [name for name in fused._fused.names if "beta" in name]  # the default Swish network: its learnable
    assert len(betas) == 12 and fused.policy.activation == "swish"  # betas are in the flat buffer and the graph
    for step in range(2):
        _update_at_seed(eager, _batch(step), step)
        _update_at_seed(fused, _batch(step), step)
    _assert_same_state(fused, eager)
    torch.testing.assert_close(fused._flat.grad, eager._flat.grad, rtol=1e-4, atol=1e-5)
    for agent in (eager, fused):
        agent.optimizer.param_groups[0]["lr"] = 0.05  # 50x the default step: a missed change would show
    m_eager, m_fused = _update_at_seed(eager, _batch(2), 2), _update_at_seed(fused, _batch(2), 2)
    _assert_same_state(fused, eager)
    torch.testing.assert_close(m_fused["losses/grad_norm"], m_eager["losses/grad_norm"], rtol=1e-4, atol=1e-5)
    before = [p.detach().clone() for p in fused.policy.parameters()]
    bad = _batch(3)._replace(reward=_batch(3).reward.index_fill(0, torch.tensor([1]), float("nan")))
    m_eager, m_fused = _update_at_seed(eager, bad, 3), _update_at_seed(fused, bad, 3)
    assert float(m_fused["faults/update_skipped"]) == 1.0 == float(m_eager["faults/update_skipped"])
    assert int(fused.faults.skipped) == 1 and not torch.isfinite(m_fused["losses/loss"])
    assert all(torch.equal(p, q) for p, q in zip(fused.policy.parameters(), before))
    _assert_same_state(fused, eager)
    assert int(fused.optimizer_state_dict()["state"][0]["step"]) == 3
    assert fused._fused.active  # no fallback happened along the way
    moved = [name for (name, p), p0 in zip(fused.policy.named_parameters(), _agent().policy.parameters())
             if "beta" in name and not torch.equal(p, p0)]
    assert moved == betas  # every beta was trained (and matched the eager update above)


def test_fused_update_falls_back_to_the_unfused_path_when_compiling_fails(capsys):
    torch._dynamo.reset()
    agent, eager = _agent(compile=True), _agent(compile=False)

    def broken(*args, **kwargs):
        raise dynamo_exc.Unsupported("no C++ compiler in this test")

    agent._fused.compiled.compiled = broken  # the first call runs the same update eagerly (torch.func)
    agent._loss_fn.compiled = broken  # and the unfused path's loss: eager from then on
    for step in range(2):
        _update_at_seed(agent, _batch(step), step)
        _update_at_seed(eager, _batch(step), step)
    assert not agent._fused.active
    assert "compiling the fused MEow update failed" in capsys.readouterr().err
    _assert_same_state(agent, eager)


def test_bf16_autocast_loss_is_close_to_float32_and_trains():
    fp32, bf16 = _agent(compile=False), _agent(compile=False, amp="bf16")
    loss32 = fp32.update(_batch(0))["losses/loss"]
    loss16 = bf16.update(_batch(0))["losses/loss"]
    assert loss16.dtype == torch.float32 and torch.isfinite(loss16)
    assert abs(float(loss16) - float(loss32)) < 0.05 * abs(float(loss32)) + 1e-3
    assert all(p.dtype == torch.float32 for p in bf16.policy.parameters())
    changed = any(not torch.equal(a, b) for a, b in zip(fp32.policy.parameters(), bf16.policy.parameters()))
    assert changed  # bf16 matmuls round differently: the two runs are not the same computation


@pytest.mark.parametrize("setting,device,expected", [("auto", "cpu", False), ("auto", "cuda", True), (True, "cpu", True),
                                                     ("True", "cpu", True), (False, "cuda", False), ("false", "cpu", False)])
def test_resolve_compile(setting, device, expected):
    assert resolve_compile(setting, torch.device(device)) is expected


def test_auto_compiles_long_cpu_runs_only():
    from meow_isaac.compile import CPU_AUTO_COMPILE_UPDATES as n

    assert resolve_compile("auto", CPU, n) and not resolve_compile("auto", CPU, n - 1)
    assert not resolve_compile("auto", CPU, None) and not resolve_compile("False", CPU, 10 * n)
    assert resolve_compile("auto", torch.device("cuda"), 0)


@pytest.mark.parametrize("key,value", [("compile", "sometimes"), ("amp", "fp16"), ("amp", "bfloat16")])
def test_bad_compile_and_amp_values_name_key_and_choices(key, value):
    with pytest.raises(ConfigError, match=f"train.{key}={value!r}; accepted: "):
        TrainConfig.from_mapping({key: value})
    with pytest.raises(ValueError, match=key):
        _agent(**{key: value})
    assert TrainConfig.from_mapping({"compile": True}).compile == "True"


def test_autocast_context_is_bf16_only_when_asked():
    with autocast("bf16", CPU):
        assert (torch.randn(4, 4) @ torch.randn(4, 4)).dtype == torch.bfloat16
    with autocast("none", CPU):
        assert (torch.randn(4, 4) @ torch.randn(4, 4)).dtype == torch.float32


def test_compiler_failure_falls_back_to_eager_once_with_a_warning(capsys):
    calls = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x * 2

    wrapped = Compiled(fn, CPU, "the test function")

    def broken(*args, **kwargs):
        raise dynamo_exc.Unsupported("no C++ compiler in this test")

    wrapped.compiled = broken
    torch.testing.assert_close(wrapped(torch.ones(3)), torch.full((3,), 2.0))
    torch.testing.assert_close(wrapped(torch.ones(2)), torch.full((2,), 2.0))
    err = capsys.readouterr().err
    assert err.count("compiling the test function failed") == 1 and "running it eagerly" in err
    assert wrapped.compiled is None and len(calls) == 2


def test_errors_of_the_function_itself_are_not_swallowed():
    wrapped = Compiled(lambda x: x, CPU, "identity")

    def user_error(*args, **kwargs):
        raise KeyError("a bug in user code")

    wrapped.compiled = user_error
    with pytest.raises(KeyError):
        wrapped(torch.ones(1))


@pytest.mark.parametrize("native,amp,warned", [(False, "bf16", True), (True, "bf16", False), (None, "bf16", False),
                                               (False, "none", False)])
def test_bf16_on_a_cpu_without_native_bf16_warns_once_per_agent(monkeypatch, capsys, native, amp, warned):
    import meow_isaac.compile as compile_module

    monkeypatch.setattr(compile_module, "cpu_has_native_bf16", lambda: native)
    _agent(amp=amp)
    err = capsys.readouterr().err
    assert ("no native bf16" in err) is warned and err.count("train.amp=bf16") == int(warned)


class _Entry:
    """The fields of ``torch._dynamo.types.GuardFilterEntry`` that :func:`guards_without` reads."""

    def __init__(self, name: str, guard_type: str = "TYPE_MATCH", value: object = None) -> None:
        self.name, self.guard_type, self.value = name, guard_type, value


def test_guards_without_drops_only_the_fixed_arguments_guards():
    from meow_isaac.compile import guards_without

    keep = guards_without(("loss_module", "names", "views"))
    dropped = ["loss_module._modules['policy']", "names[3]", "views.__self__.shapes[0][1]", "type(loss_module).__mro__",
               "list(dict.keys(loss_module._modules))", "L['names'][0]", "views"]
    kept = ["alpha", "batch.obs", "flat", "names_of_something", "G['names']", "target_flat"]
    assert keep([_Entry(n) for n in dropped]) == [False] * len(dropped)
    assert keep([_Entry(n) for n in kept]) == [True] * len(kept)
    buffer, parameter = torch.zeros(3), torch.nn.Parameter(torch.zeros(3))
    assert keep([_Entry("loss_module._modules['policy']._buffers['mask']", "TENSOR_MATCH", buffer),
                 _Entry("loss_module._modules['policy']._parameters['w']", "TENSOR_MATCH", parameter)]) == [True, False]


def test_fused_update_still_follows_changed_hyperparameters_and_other_agents():
    """Guards on the fused update's fixed arguments are dropped: what may change between calls (alpha, gamma, tau,
    the batch's shape) must still be seen, and a second agent of another size must get its own graph."""
    torch._dynamo.reset()
    eager, fused = _agent(dropout=0.1, compile=False), _agent(dropout=0.1, compile=True)
    _update_at_seed(eager, _batch(0), 0)
    _update_at_seed(fused, _batch(0), 0)
    for agent in (eager, fused):
        agent.alpha, agent.gamma, agent.tau = 0.7, 0.5, 0.3
    m_eager, m_fused = _update_at_seed(eager, _batch(1, b=32), 1), _update_at_seed(fused, _batch(1, b=32), 1)
    torch.testing.assert_close(m_fused["losses/loss"], m_eager["losses/loss"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(m_fused["values/target_y"], m_eager["values/target_y"], rtol=1e-4, atol=1e-5)
    _assert_same_state(fused, eager)
    torch.manual_seed(0)
    small_eager = MEowAgent(3, 1, CPU, alpha=0.2, tau=0.1, compile=False)
    torch.manual_seed(0)
    small_fused = MEowAgent(3, 1, CPU, alpha=0.2, tau=0.1, compile=True)
    m_eager = _update_at_seed(small_eager, _batch(2, obs_dim=3, action_dim=1), 2)
    m_fused = _update_at_seed(small_fused, _batch(2, obs_dim=3, action_dim=1), 2)
    torch.testing.assert_close(m_fused["losses/loss"], m_eager["losses/loss"], rtol=1e-4, atol=1e-5)
    _assert_same_state(small_fused, small_eager)
    assert fused._fused.active and small_fused._fused.active


def test_compiled_loss_path_with_dropped_module_guards_matches_eager():
    """The unfused compiled path (CUDA's, and the CPU's under torchrun or two_pass) compiles ``meow_loss`` with its
    guards on the policy and target modules dropped: it must still match eager, before and after alpha changes."""
    torch._dynamo.reset()
    eager, compiled = _agent(compile=False, two_pass=True), _agent(compile=True, two_pass=True)
    assert compiled._fused is None and isinstance(compiled._loss_fn, Compiled)
    for step in range(3):
        if step == 2:
            eager.alpha = compiled.alpha = 0.9
        m_eager, m_comp = _update_at_seed(eager, _batch(step), step), _update_at_seed(compiled, _batch(step), step)
        torch.testing.assert_close(m_comp["losses/loss"], m_eager["losses/loss"], rtol=1e-4, atol=1e-5)
    _assert_same_state(compiled, eager)
    assert compiled._loss_fn.active


def test_cuda_graphs_are_on_by_default_on_cuda_and_can_be_turned_off():
    """``Compiled(cudagraphs=False)`` (bench_update's ``compiled_nograph``): the same compiled code without CUDA graphs;
    nothing compiles before the first call, so this runs without a GPU."""
    cuda = torch.device("cuda")
    assert Compiled(lambda x: x, cuda, "f").cudagraphs
    assert not Compiled(lambda x: x, cuda, "f", cudagraphs=False).cudagraphs
    assert not Compiled(lambda x: x, cuda, "f", fixed_args=("x",), cudagraphs=False).cudagraphs
    assert not Compiled(lambda x: x, CPU, "f").cudagraphs  # no CUDA graphs on CPU, whatever the flag
