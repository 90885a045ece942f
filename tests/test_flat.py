"""Flat parameter buffer (meow_isaac/flat.py) and the allocator setting (meow_isaac/cpu_alloc.py)."""

import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

from meow_isaac.agents.meow import MEowAgent, meow_loss
from meow_isaac.flat import FlatParams, adam_state_from_per_param

from test_compile import _batch

CPU = torch.device("cpu")


def _per_param_reference(agent: MEowAgent):
    """Independent copies of the agent's nets (own storage) with a per-parameter Adam: the textbook update."""
    policy, target = copy.deepcopy(agent.policy), copy.deepcopy(agent.target)
    for net in (policy, target):
        for p in net.parameters():
            p.data = p.data.clone()
    return policy, target, torch.optim.Adam(policy.parameters(), lr=1e-3)


def test_flat_update_equals_a_per_parameter_adam_clip_and_polyak():
    torch.manual_seed(0)
    agent = MEowAgent(5, 2, CPU, alpha=0.2, tau=0.05, dropout=0.0, grad_norm=0.5)  # clip active
    policy, target, adam = _per_param_reference(agent)
    for seed in range(6):
        batch = _batch(seed)
        metrics = agent.update(batch)
        loss, _ = meow_loss(policy, target, batch, 0.2, 0.99)
        adam.zero_grad()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
        adam.step()
        with torch.no_grad():
            for tp, p in zip(target.parameters(), policy.parameters()):
                tp.lerp_(p, 0.05)
        assert float(metrics["losses/grad_norm"]) == pytest.approx(float(norm), rel=1e-5)
    for ours, ref in ((agent.policy, policy), (agent.target, target)):
        for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
            assert torch.allclose(p, q, atol=1e-6), name
    # the per-parameter grads are views of the flat gradient buffer, filled by autograd in place
    assert float(agent._flat.grad.abs().sum()) > 0
    first = next(agent.policy.parameters())
    assert first.grad.data_ptr() == agent._flat.grad.data_ptr()


def test_optimizer_state_keeps_the_per_parameter_format_and_round_trips():
    torch.manual_seed(0)
    agent = MEowAgent(5, 2, CPU, dropout=0.0)
    policy, target, adam = _per_param_reference(agent)
    for seed in range(3):
        agent.update(_batch(seed))
        loss, _ = meow_loss(policy, target, _batch(seed), agent.alpha, agent.gamma)
        adam.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(policy.parameters(), agent.grad_norm)
        adam.step()
    ours, theirs = agent.optimizer_state_dict(), adam.state_dict()
    assert sorted(ours["state"]) == sorted(theirs["state"]) == list(range(len(list(agent.policy.parameters()))))
    for i, entry in theirs["state"].items():
        assert torch.allclose(ours["state"][i]["exp_avg"], entry["exp_avg"], atol=1e-7)
        assert ours["state"][i]["exp_avg"].shape == entry["exp_avg"].shape
        assert float(ours["state"][i]["step"]) == float(entry["step"]) == 3.0
    fresh = MEowAgent(5, 2, CPU, dropout=0.0)
    fresh.load_optimizer_state_dict(theirs)  # a plain per-parameter Adam state (checkpoints before the buffer)
    assert torch.equal(fresh.optimizer.state[fresh._flat.param]["exp_avg"],
                       agent.optimizer.state[agent._flat.param]["exp_avg"]) or torch.allclose(
        fresh.optimizer.state[fresh._flat.param]["exp_avg"], agent.optimizer.state[agent._flat.param]["exp_avg"],
        atol=1e-7)


def test_bad_optimizer_states_are_refused_with_the_reason():
    agent = MEowAgent(5, 2, CPU)
    agent.update(_batch(0))
    state = agent.optimizer_state_dict()
    state["state"][3]["exp_avg"] = torch.zeros(7)
    with pytest.raises(ValueError, match="parameter 3 exp_avg: expected shape"):
        adam_state_from_per_param(state, agent._flat)
    state = agent.optimizer_state_dict()
    state["param_groups"][0]["params"] = state["param_groups"][0]["params"][:-1]
    with pytest.raises(ValueError, match="expected one group of"):
        adam_state_from_per_param(state, agent._flat)
    with pytest.raises(ValueError, match="one device and dtype"):
        FlatParams([nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2, dtype=torch.float64))])


def test_moving_the_agent_rebuilds_the_buffers_and_keeps_training_state():
    torch.manual_seed(0)
    agent = MEowAgent(5, 2, CPU, dropout=0.0)
    agent.update(_batch(0))
    before = agent.optimizer_state_dict()
    agent.double()  # any Module._apply re-seats the parameters
    assert agent._flat.is_intact() and agent._flat.data.dtype == torch.float64
    after = agent.optimizer_state_dict()
    assert torch.allclose(after["state"][0]["exp_avg"].float(), before["state"][0]["exp_avg"])
    params = dict(agent.policy.named_parameters())
    weight = params["couplings.0.net.0.weight"].detach().clone()  # (the sigma net's zero-initialised first
    # layer gets its first gradient only at the third update: the layers after it start at zero as well)
    batch = _batch(1)
    agent.update(batch._replace(**{k: getattr(batch, k).double() for k in ("obs", "action", "reward", "next_obs",
                                                                          "terminated")}))
    assert not torch.equal(params["couplings.0.net.0.weight"], weight)  # the step reached the module's own parameters


def _minflt_per_update(mode: str) -> float:
    """Minor page faults per MEow update (Hopper sizes, batch 512) in a fresh process, cpu_malloc=``mode``."""
    code = f"""
import resource, torch
from meow_isaac.cpu_alloc import retain_freed_memory
ok = retain_freed_memory() if {mode!r} == "retain" else True
torch.set_num_threads(1)
from meow_isaac.agents.meow import MEowAgent
from meow_isaac.replay import Batch
g = torch.Generator().manual_seed(0)
b = Batch(torch.randn(512, 11, generator=g), torch.rand(512, 3, generator=g) * 1.8 - 0.9,
          torch.randn(512, generator=g), torch.randn(512, 11, generator=g), torch.zeros(512))
agent = MEowAgent(11, 3, torch.device("cpu"))
for _ in range(5):
    agent.update(b)
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    agent.update(b)
print(ok, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 10)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "True"
    return float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_retained_memory_stops_the_page_faults_of_the_update():
    default, retained = _minflt_per_update("default"), _minflt_per_update("retain")
    # glibc's default maps large activations anew (mmap) or gives the freed heap top back (trim): each update then
    # faults its pages in again
    assert default > 100, default
    # alone: about 0.6 against 700-1900; beside the other pytest worker: 154 against 577 (the kernel reclaims
    # some pages of a busy machine), hence a factor of 2, which a setting without effect (about 1) still fails
    assert retained < 0.5 * default, (retained, default)
