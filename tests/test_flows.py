"""EBFlow properties (paper Sec. 3, spec sections 2-5) and the MEow loss."""

import math

import pytest
import torch

from meow_isaac.agents.meow import MEowAgent, meow_loss
from meow_isaac.config import ConfigError, TrainConfig
from meow_isaac.flows import ACTION_CLAMP, EBFlowPolicy, Swish
from meow_isaac.replay import Batch


def _randomised_flow(obs_dim: int, action_dim: int, seed: int = 0, **kw) -> EBFlowPolicy:
    """A flow whose zero-initialised layers are given random weights, so every term is non-trivial."""
    torch.manual_seed(seed)
    flow = EBFlowPolicy(obs_dim, action_dim, **kw)
    with torch.no_grad():
        for p in flow.parameters():
            if p.abs().sum() == 0 and p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return flow.eval()


@pytest.mark.parametrize("action_dim", [1, 2, 3, 6])
def test_q_minus_v_is_log_prob(action_dim):
    flow = _randomised_flow(5, action_dim)
    obs = torch.randn(64, 5)
    action = flow.sample(obs)
    alpha = 0.3
    q, v = flow.soft_q(obs, action, alpha), flow.soft_v(obs, alpha)
    log_prob = flow.log_prob(obs, action)
    assert q.shape == v.shape == (64, 2)
    for j in range(2):
        torch.testing.assert_close((q[:, j] - v[:, j]) / alpha, log_prob, rtol=1e-4, atol=1e-4)
    # The two heads differ (different shifts) but give the same policy.
    assert not torch.allclose(q[:, 0], q[:, 1])


def test_density_integrates_to_one_1d():
    flow = _randomised_flow(3, 1, sigma_max=0.0, sigma_min=-1.5)
    obs = torch.randn(4, 3)
    grid = torch.linspace(-1 + 1e-6, 1 - 1e-6, 4001)
    for s in obs:
        with torch.no_grad():
            density = torch.exp(flow.log_prob(s.expand(grid.numel(), 3), grid[:, None]).double())
        total = torch.trapezoid(density, grid.double())
        assert abs(total.item() - 1.0) < 1e-3, total


def test_density_integrates_to_one_2d():
    flow = _randomised_flow(3, 2, sigma_max=0.0, sigma_min=-1.5)
    obs = torch.randn(2, 3)
    side = torch.linspace(-1 + 1e-5, 1 - 1e-5, 401)
    a0, a1 = torch.meshgrid(side, side, indexing="ij")
    actions = torch.stack((a0.reshape(-1), a1.reshape(-1)), -1)
    for s in obs:
        with torch.no_grad():
            density = torch.exp(flow.log_prob(s.expand(actions.shape[0], 3), actions).double()).reshape(401, 401)
        total = torch.trapezoid(torch.trapezoid(density, side.double(), dim=1), side.double())
        assert abs(total.item() - 1.0) < 3e-3, total


def test_inverse_of_forward_is_identity():
    flow = _randomised_flow(7, 4)
    obs = torch.randn(128, 7)
    z0 = torch.randn(128, 4) * 0.5
    action = flow(obs, z0)
    assert action.abs().max() < 1
    z_back, _, _ = flow.inverse(obs, action)
    torch.testing.assert_close(z_back, z0, rtol=1e-3, atol=1e-3)


def test_deterministic_action_is_image_of_zero_noise():
    flow = _randomised_flow(4, 3)
    obs = torch.randn(16, 4)
    torch.testing.assert_close(flow.sample(obs, deterministic=True), flow(obs, torch.zeros(16, 3)))
    stochastic = flow.sample(obs)
    assert not torch.allclose(stochastic, flow.sample(obs, deterministic=True))


def test_soft_v_uses_no_coupling():
    flow = _randomised_flow(4, 3)
    obs = torch.randn(8, 4)
    v = flow.soft_v(obs, 0.2)
    with torch.no_grad():
        for layer in flow.couplings:
            for p in layer.parameters():
                p.add_(1.0)
    torch.testing.assert_close(flow.soft_v(obs, 0.2), v)


def test_soft_v_closed_form():
    flow = _randomised_flow(4, 3)
    obs = torch.randn(8, 4)
    alpha = 0.5
    expected = alpha * (flow.log_sigma(obs).sum(-1, keepdim=True) + 1.5 * math.log(2 * math.pi)
                        + flow.reward_shifts(obs))
    torch.testing.assert_close(flow.soft_v(obs, alpha), expected)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="sigma_min"):
        EBFlowPolicy(3, 2, sigma_max=-1.0, sigma_min=-0.5)
    with pytest.raises(ValueError, match="action_dim"):
        EBFlowPolicy(3, 0)


def _batch(obs_dim=5, action_dim=2, n=32):
    return Batch(torch.randn(n, obs_dim), torch.rand(n, action_dim) * 2 - 1, torch.randn(n),
                 torch.randn(n, obs_dim), (torch.rand(n) < 0.2).float())


def test_loss_matches_hand_computation_and_two_pass_without_dropout():
    policy, target = _randomised_flow(5, 2, seed=1), _randomised_flow(5, 2, seed=2)
    batch = _batch()
    alpha, gamma = 0.2, 0.9
    loss, metrics = meow_loss(policy, target, batch, alpha, gamma)
    v_next = target.soft_v(batch.next_obs, alpha).min(-1).values
    y = batch.reward + gamma * (1 - batch.terminated) * v_next
    q = policy.soft_q(batch.obs, batch.action, alpha)
    expected = 0.5 * (((q[:, 0] - y) ** 2).mean() + ((q[:, 1] - y) ** 2).mean())
    torch.testing.assert_close(loss, expected)
    loss_two, _ = meow_loss(policy, target, batch, alpha, gamma, two_pass=True)
    torch.testing.assert_close(loss_two, loss)  # eval mode: no dropout, so identical
    torch.testing.assert_close(metrics["values/target_y"], y.mean())


def test_update_reduces_loss_and_moves_target_by_tau():
    torch.manual_seed(0)
    agent = MEowAgent(5, 2, torch.device("cpu"), alpha=0.2, tau=0.1, dropout=0.0)
    batch = _batch(n=64)
    before = [p.clone() for p in agent.target.parameters()]
    first = agent.update(batch)["losses/loss"]
    for p_t, p_b, p in zip(agent.target.parameters(), before, agent.policy.parameters()):
        torch.testing.assert_close(p_t, p_b + 0.1 * (p - p_b))
    for _ in range(100):
        last = agent.update(batch)["losses/loss"]
    assert last < 0.5 * first


def test_bit_dropout_drops_at_rate_p_keeps_the_mean_and_is_identity_in_eval():
    from meow_isaac.flows import BitDropout

    torch.manual_seed(0)
    layer = BitDropout(0.1)
    x = torch.ones(400, 250)
    y = layer(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.005  # 100k entries: std of the rate is 0.001
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.9))
    assert abs(y.mean().item() - 1.0) < 0.01
    # every 16-bit slice of the random words is used: no column pattern in the mask
    per_column = (y == 0).float().mean(0)
    assert per_column.min() > 0.04 and per_column.max() < 0.17
    layer.eval()
    assert layer(x) is x
    assert BitDropout(0.0).train()(x) is x
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="dropout p="):
            BitDropout(bad)


def test_bit_dropout_compiled_with_predraw_uses_the_eager_mask_and_checks_its_size():
    from meow_isaac.flows import BitDropout

    layer = BitDropout(0.3).train()
    compiled = torch.compile(layer)
    x = torch.randn(16, 8)
    for seed in (1, 2):  # the second call runs the cached graph on a fresh mask
        torch.manual_seed(seed)
        layer.predraw(x.numel())
        y = compiled(x)
        torch.manual_seed(seed)
        torch.testing.assert_close(y, layer(x))  # eager draw from the same generator state
        assert 0 < (y == 0).sum() < x.numel()
    layer.predraw(x.numel() - 1)
    with pytest.raises(RuntimeError, match=r"BitDropout: 127 predrawn mask entries for an input of 128"):
        compiled(x)


@pytest.mark.parametrize("activation", ["swish", "relu"])
def test_obs_features_split_first_layers_compute_the_concatenated_input_networks(activation):
    """forward/inverse run the observation part of all first layers as one matmul (EBFlowPolicy.obs_features):
    same values and same parameter gradients (Swish betas included) as each coupling network on cat(m*u, s), and
    no gradient w.r.t. s. In float64, so that the comparison is of functions, not of float32 rounding."""
    torch.manual_seed(0)
    flow = EBFlowPolicy(obs_dim=7, action_dim=3, dropout=0.0, activation=activation).double()
    for p in flow.parameters():  # non-zero output layers, so every path carries gradient
        torch.nn.init.normal_(p, std=0.3)
    obs, action = torch.randn(9, 7, dtype=torch.float64), torch.rand(9, 3, dtype=torch.float64) * 1.8 - 0.9

    def per_coupling_inverse():
        a = action.clamp(-ACTION_CLAMP, ACTION_CLAMP)
        u = torch.atanh(a)
        for layer in reversed(flow.couplings):
            u = layer.inverse(u, obs)  # the network on cat(m*u, s)
        log_sigma = flow.log_sigma(obs)
        return u * torch.exp(-log_sigma), log_sigma

    z_ref, ls_ref = per_coupling_inverse()
    z, ls, _ = flow.inverse(obs, action)
    torch.testing.assert_close(z, z_ref, rtol=1e-5, atol=1e-4)  # |z| ~ 25 near the clamp: float32 sums differ per CPU
    torch.testing.assert_close(ls, ls_ref)
    params = [p for name, p in flow.named_parameters() if not name.startswith("shift_heads")]
    grads_ref = torch.autograd.grad(z_ref.square().sum() + ls_ref.sum(), params)
    grads = torch.autograd.grad(z.square().sum() + ls.sum(), params)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref)
    assert (activation == "swish") == any(name.endswith("beta") for name, _ in flow.named_parameters())
    u = torch.randn(9, 3, dtype=torch.float64) * 0.5
    u_ref = torch.exp(flow.log_sigma(obs)) * u
    for layer in flow.couplings:
        u_ref = layer(u_ref, obs)
    torch.testing.assert_close(flow(obs, u), torch.tanh(u_ref))
    features = flow.obs_features(obs)
    assert len(features) == 1 + len(flow.couplings) and all(f.shape == (9, 64) for f in features)
    torch.testing.assert_close(features[0], flow.sigma_net[0](obs))


def test_bit_dropout_predraw_refills_the_same_buffer():
    from meow_isaac.flows import BitDropout

    layer = BitDropout(0.25).train()
    layer.predraw(64)
    buffer = layer.keep_scale
    first = buffer.clone()
    layer.predraw(64)
    assert layer.keep_scale is buffer and not torch.equal(buffer, first)  # redrawn in place
    values = buffer.unique()
    assert len(values) == 2 and values[0] == 0.0 and math.isclose(float(values[1]), 1 / 0.75, rel_tol=1e-6)
    layer.predraw(32)
    assert layer.keep_scale is not buffer and layer.keep_scale.numel() == 32


def test_generate_ignores_dropout_in_train_mode_and_act_leaves_the_mode_alone():
    torch.manual_seed(0)
    flow = EBFlowPolicy(obs_dim=4, action_dim=2, dropout=0.5)
    obs, z0 = torch.randn(32, 4), torch.randn(32, 2)
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.5)
    expected = flow.eval()(obs, z0)
    flow.train()
    torch.testing.assert_close(flow.generate(obs, z0), expected)
    assert not torch.allclose(flow(obs, z0), expected)  # forward in train mode does apply dropout (p=0.5)
    agent = MEowAgent(4, 2, torch.device("cpu"), dropout=0.5)
    agent.policy.train()
    agent.act(obs)
    assert agent.policy.training and all(m.training for m in agent.policy.modules())


# ------------------------------------------------------------------------------------------- the authors' network
def _swish_ref(x, beta):
    return x * torch.sigmoid(beta * x)


def test_default_network_is_the_authors_swish_network_with_their_init():
    """ChienFeng-hub/meow nf/nets.py + init_Flow: Swish (beta (hidden,) = 1) after every hidden layer of the sigma
    network, the couplings and both shift heads; sigma net and shift heads: all weights zero, biases nn.Linear's
    default; couplings: orthogonal weights, default biases. 167,313 parameters at obs 11 / action 3 (spec §2)."""
    torch.manual_seed(0)
    flow = EBFlowPolicy(11, 3)
    assert flow.activation == "swish"
    assert sum(p.numel() for p in flow.parameters()) == 167_313
    for net in [flow.sigma_net] + [c.net for c in flow.couplings]:
        swishes = [m for m in net if isinstance(m, Swish)]
        assert len(swishes) == 2 and not any(isinstance(m, torch.nn.ReLU) for m in net)
        assert all(torch.equal(s.beta, torch.ones(64)) for s in swishes)
    kinds = [type(m).__name__ for m in flow.couplings[0].net]  # the reference's order within a hidden layer
    assert kinds[:4] == ["Linear", "LayerNorm", "Swish", "BitDropout"]
    linears = [m for m in flow.sigma_net if isinstance(m, torch.nn.Linear)]
    assert all(not m.weight.any() for m in linears)
    for m in linears:  # default bias init U(-1/sqrt(fan_in), 1/sqrt(fan_in)), not zero
        assert m.bias.abs().max() <= 1 / math.sqrt(m.in_features) and m.bias.abs().min() > 0
    for coupling in flow.couplings:
        for m in (m for m in coupling.net if isinstance(m, torch.nn.Linear)):
            w = m.weight if m.weight.shape[0] <= m.weight.shape[1] else m.weight.T
            torch.testing.assert_close(w @ w.T, torch.eye(w.shape[0]), atol=1e-5, rtol=0)
            assert m.bias.abs().max() <= 1 / math.sqrt(m.in_features) and m.bias.abs().min() > 0
    heads = flow.shift_heads
    assert all(not w.any() for w in heads.weights)
    for w, b in zip(heads.weights, heads.biases):
        assert b.abs().max() <= 1 / math.sqrt(w.shape[1]) and b.abs().min() > 0
    assert [tuple(beta.shape) for beta in heads.betas] == [(2, 1, 256), (2, 1, 256)]
    assert all(torch.equal(beta, torch.ones_like(beta)) for beta in heads.betas)
    obs = torch.randn(5, 11)  # zero weights: sigma(s) and the shifts start as constants of the biases
    torch.testing.assert_close(flow.log_sigma(obs), flow.log_sigma(obs[:1]).expand(5, 3))
    torch.testing.assert_close(flow.reward_shifts(obs), heads.biases[2][:, 0, 0].expand(5, 2))


def test_swish_shift_heads_and_mlps_compute_the_reference_formula_and_train_beta():
    torch.manual_seed(0)
    flow = _randomised_flow(4, 2, dropout=0.0)
    with torch.no_grad():
        for p in flow.parameters():
            if p.dim() == 1 or p.shape[-2] == 1:  # betas and biases off their initial values
                p.add_(torch.randn_like(p) * 0.3)
    obs = torch.randn(6, 4)
    heads = flow.shift_heads
    for j in range(2):  # each head is its own reference MLP: Linear -> Swish(beta_j) -> Linear -> Swish -> Linear
        h = obs
        for i in range(2):
            h = _swish_ref(h @ heads.weights[i][j] + heads.biases[i][j], heads.betas[i][j])
        ref = h @ heads.weights[2][j] + heads.biases[2][j]
        torch.testing.assert_close(heads(obs)[:, j], ref[:, 0])
    net = flow.sigma_net
    h = obs
    for lin, act in ((net[0], net[1]), (net[2], net[3])):
        h = _swish_ref(h @ lin.weight.T + lin.bias, act.beta)
    torch.testing.assert_close(net(obs), h @ net[4].weight.T + net[4].bias)
    q = flow.soft_q(obs, torch.rand(6, 2) * 1.8 - 0.9, 0.2)
    betas = [p for name, p in flow.named_parameters() if "beta" in name]
    assert len(betas) == 12 and all(g.abs().sum() > 0 for g in torch.autograd.grad(q.sum(), betas))


def test_relu_switch_is_the_earlier_network():
    torch.manual_seed(0)
    flow = EBFlowPolicy(11, 3, activation="relu")
    assert not [n for n, _ in flow.named_parameters() if "beta" in n]
    assert sum(p.numel() for p in flow.parameters()) == 167_313 - (2 * 64 + 4 * 2 * 64 + 2 * 2 * 256)
    assert not any(isinstance(m, Swish) for m in flow.modules())
    assert flow.sigma_net[0].weight.any() and not flow.sigma_net[-1].weight.any() and not flow.sigma_net[-1].bias.any()
    assert all(not m.bias.any() for c in flow.couplings for m in c.net if isinstance(m, torch.nn.Linear))
    assert flow.shift_heads.weights[0].any() and not flow.shift_heads.weights[2].any()
    assert not flow.shift_heads.biases[2].any()
    obs = torch.randn(5, 11)
    h = torch.relu(obs @ flow.sigma_net[0].weight.T + flow.sigma_net[0].bias)
    torch.testing.assert_close(flow.sigma_net[:3](obs), flow.sigma_net[2](h))


@pytest.mark.parametrize("bad", ["gelu", "Swish", ""])
def test_unknown_activation_is_refused_naming_the_choices(bad):
    with pytest.raises(ValueError, match=rf"activation={bad!r} is invalid; accepted: swish, relu"):
        EBFlowPolicy(3, 2, activation=bad)
    with pytest.raises(ConfigError, match=rf"^invalid config: train.activation={bad!r}; accepted: swish, relu$"):
        TrainConfig(activation=bad).validate()
