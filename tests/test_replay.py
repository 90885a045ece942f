"""Replay buffer: per-env ring, wraparound, invalid rows never sampled; normaliser statistics."""

import pytest
import torch

from meow_isaac.normalization import RunningObsNormalizer
from meow_isaac.replay import ReplayBuffer


def _add(buf, step, valid):
    n = buf.num_envs
    ids = torch.full((n,), float(step)) * 100 + torch.arange(n)  # unique row id: step*100 + env
    obs = ids[:, None].expand(n, 3).clone()
    buf.add(obs, torch.zeros(n, 2), ids, obs + 0.5, torch.zeros(n, dtype=torch.bool), valid)


def test_wraparound_keeps_the_newest_rows_per_env():
    buf = ReplayBuffer(num_envs=3, slots_per_env=5, obs_dim=3, action_dim=2, device=torch.device("cpu"))
    for step in range(12):
        _add(buf, step, torch.ones(3, dtype=torch.bool))
    assert buf.fill.tolist() == [5, 5, 5]
    assert int(buf.size()) == 15
    seen = set(buf.sample(4000).reward.tolist())
    expected = {float(s * 100 + e) for s in range(7, 12) for e in range(3)}
    assert seen == expected  # exactly the 5 newest rows of each env, all of them reachable
    assert int(buf.valid.sum()) == 15


def test_invalid_rows_are_never_sampled():
    torch.manual_seed(0)
    buf = ReplayBuffer(num_envs=4, slots_per_env=6, obs_dim=3, action_dim=2, device=torch.device("cpu"))
    invalid_ids = set()
    for step in range(20):
        valid = torch.rand(4) > 0.4
        valid[0] = True
        for e in range(4):
            if not valid[e]:
                invalid_ids.add(float(step * 100 + e))
        _add(buf, step, valid)
    rewards = buf.sample(20000).reward
    assert invalid_ids  # the test exercised invalid rows
    assert not (set(rewards.tolist()) & invalid_ids)
    # stored rows are consistent with the valid mask and transitions stay intact
    batch = buf.sample(512)
    torch.testing.assert_close(batch.next_obs, batch.obs + 0.5)
    torch.testing.assert_close(batch.obs[:, 0], batch.reward)
    assert int(buf.valid.sum()) == int(buf.size())


def test_sampling_is_uniform_over_rows_not_envs():
    torch.manual_seed(0)
    buf = ReplayBuffer(num_envs=2, slots_per_env=100, obs_dim=3, action_dim=2, device=torch.device("cpu"))
    for step in range(40):  # env 0 stores 40 rows, env 1 only 10
        _add(buf, step, torch.tensor([True, step % 4 == 0]))
    env = buf.sample(50000).reward.long() % 100
    share = (env == 1).float().mean().item()
    assert abs(share - 10 / 50) < 0.01


def test_buffer_errors_are_clear():
    with pytest.raises(ValueError, match="replay_size_per_env=0"):
        ReplayBuffer(2, 0, 3, 2, torch.device("cpu"))
    with pytest.raises(MemoryError, match="does not fit"):
        ReplayBuffer(1024, 10**9, 300, 20, torch.device("cpu"))


def test_state_dict_roundtrip():
    buf = ReplayBuffer(2, 4, 3, 2, torch.device("cpu"))
    for step in range(6):
        _add(buf, step, torch.tensor([True, step % 2 == 0]))
    other = ReplayBuffer(2, 4, 3, 2, torch.device("cpu"))
    other.load_state_dict(buf.state_dict())
    torch.manual_seed(1)
    a = buf.sample(64)
    torch.manual_seed(1)
    b = other.sample(64)
    torch.testing.assert_close(a.obs, b.obs)
    assert other.num_adds == buf.num_adds == 6


def test_normalizer_matches_batch_statistics():
    torch.manual_seed(0)
    data = torch.randn(1000, 4) * torch.tensor([1.0, 5.0, 0.1, 2.0]) + torch.tensor([3.0, -1.0, 0.0, 10.0])
    norm = RunningObsNormalizer(4, clip=100.0)
    for chunk in data.split(37):
        norm.update(chunk)
    torch.testing.assert_close(norm.mean, data.double().mean(0))
    torch.testing.assert_close(norm.var, data.double().var(0, unbiased=False))
    out = norm(data)
    torch.testing.assert_close(out.mean(0), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(0, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)
    assert set(norm.state_dict()) == {"mean", "var", "count", "enabled_flag"}
    restored = RunningObsNormalizer(4, enabled=False)
    restored.load_state_dict(norm.state_dict())
    assert restored.enabled
    torch.testing.assert_close(restored(data), out)


def test_disabled_normalizer_is_identity():
    norm = RunningObsNormalizer(3, enabled=False)
    x = torch.randn(5, 3) * 10
    norm.update(x)
    assert torch.equal(norm(x), x)
    assert float(norm.count) == 0
