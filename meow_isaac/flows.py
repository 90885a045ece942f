"""Energy-based normalizing flow (EBFlow) policy of MEow: one network that is actor and critic.

Chao et al., "Maximum Entropy Reinforcement Learning via Energy-Based Normalizing Flow", NeurIPS 2024
(arXiv:2405.13629), Section 3 (EBFlow parameterisation, Eqs. 8-11) and Section 3.3 (learnable reward
shifting). Architecture as specified in ``shared/reference/meow_algorithm.md`` sections 2-5.

Generation direction (sampling), ``z0 ~ N(0, I_d)``::

    u = sigma(s) * z0                       linear layer: log|det| = sum log sigma(s), depends on s only
    u <- m*u + (1-m)*(u + t_k(m*u, s))      2K additive couplings, masks m, 1-m, ...: volume preserving
    a = tanh(u)                             non-linear squashing

Density direction (``a -> z0``) gives the soft Q and the exact soft V of each reward-shift head ``j``::

    Q_j(s, a) = alpha * (-0.5 ||z0||^2 - sum_i log(1 - a_i^2 + eps) + b_j(s))
    V_j(s)    = alpha * ( sum_i log sigma_i(s) + d/2 log(2 pi) + b_j(s))

so that ``(Q_j - V_j) / alpha = log pi(a|s)`` exactly (paper Eq. 10-11).

Network (``train.activation``): ``swish`` (default) is the authors' network (``nf/nets.py`` and the ``init_Flow``
of ``cleanrl/cleanrl/meow_continuous_action.py`` / ``skrl/trainer_meow.py``, GitHub ``ChienFeng-hub/meow``): every
hidden layer of the sigma network, the couplings and the shift heads is followed by :class:`Swish`
``x * sigmoid(beta * x)`` with a learnable ``beta`` per unit (initialised to 1); all weights of the sigma network
and the shift heads are zero-initialised, the couplings' weights orthogonal, every bias keeps ``nn.Linear``'s
default init. ``relu`` is this project's earlier network (ReLU; default init of the hidden layers, zero output
layers of the sigma network and the shift heads, orthogonal coupling weights with zero biases), which checkpoints
written before the switch hold: zero hidden weights would leave the ReLU units with a negative bias dead for good.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

EPS = float(torch.finfo(torch.float32).eps)
_AUTOCAST_TAKES_DEVICE = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)  # is_autocast_enabled(dev)
ACTION_CLAMP = 1.0 - 1e-5
ACTIVATIONS = ("swish", "relu")  # train.activation; the first is the default (the authors' network)


def _compiling() -> bool:
    """True while ``torch.compile`` traces (``torch.compiler.is_compiling``, torch >= 2.1; False before)."""
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(is_compiling()) if is_compiling is not None else False


def unsquash(action: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Invert the ``tanh`` squashing: ``u = atanh(a)`` ``(B, d)`` (``a`` clamped to ``+-ACTION_CLAMP``) and its
    log-Jacobian ``-sum_i log(1 - a_i^2 + eps)`` ``(B,)`` (spec section 2.3)."""
    a = action.clamp(-ACTION_CLAMP, ACTION_CLAMP)
    return torch.atanh(a), -torch.log(1.0 - a.square() + EPS).sum(-1)


def _random_words(n: int, device: torch.device) -> torch.Tensor:
    """``(n,)`` int16: the 16-bit slices of ``ceil(n / 4)`` uniform 64-bit random words (global RNG)."""
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2**63, 2**63 - 1)
    return words.view(torch.int16)[:n]


def _bit_keep_mask(shape: Sequence[int], device: torch.device, threshold: int) -> torch.Tensor:
    """Bool keep mask of ``shape``: int16 slices of 64-bit random words ``>= threshold`` (global RNG)."""
    return _random_words(math.prod(shape), device).view(shape) >= threshold


_bit_keep_mask_op = None
if hasattr(torch, "library") and hasattr(torch.library, "custom_op"):  # torch >= 2.4
    @torch.library.custom_op("meow_isaac::bit_keep_mask", mutates_args=())
    def _bit_keep_mask_op(x: torch.Tensor, threshold: int) -> torch.Tensor:
        return _bit_keep_mask(x.shape, x.device, threshold)

    @_bit_keep_mask_op.register_fake
    def _(x: torch.Tensor, threshold: int) -> torch.Tensor:
        return torch.empty_like(x, dtype=torch.bool)


class BitDropout(nn.Module):
    """Inverted dropout: in train mode each entry is zeroed with probability ``p`` and the rest are scaled by
    ``1 / (1 - p)``; identity in eval mode. Same contract as ``nn.Dropout`` (shape and dtype of the input).

    On CPU the keep mask is read from 16-bit slices of 64-bit random words (four mask entries per generator
    draw), so ``p`` is rounded to a multiple of ``2**-16`` (0.1 -> 0.100006). ``torch.bernoulli_`` draws one
    float per entry; on a 256 x 64 activation this is 20 us + 38 us against 122 us for ``bernoulli_`` and 195 us
    for ``F.dropout`` on this machine's CPU, and the coupling networks hold 8 dropout layers (whole update,
    batch 256: 1.04-1.09x on the Hopper-sized network, no change on the Humanoid-sized one;
    ``benchmarks/README.md``). Under ``torch.compile`` the mask comes from the same eager draw: made before the
    pass by :meth:`predraw` (the MEow agent does this before each compiled update) into a float32 buffer that keeps
    its identity from call to call, and multiplied in inside the graph, or, without a predraw, through the opaque
    custom op ``meow_isaac::bit_keep_mask`` (torch >= 2.4; about 130 us per layer per call, 1.04-1.12x slower for
    the whole compiled 256-row update). Inductor's own CPU random numbers (``F.dropout`` traced) cost about 2.7 ms
    of a compiled 256-row Hopper-sized update, three times the fused kernels of the rest of the loss. On other
    devices (CUDA's fused Philox kernel is already fast) and when compiling on torch < 2.4 it is ``F.dropout``.

    Raises:
        ValueError: ``p`` outside ``[0, 1)``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p={p} is invalid: expected a value in [0, 1)")
        self.p = float(p)
        self.threshold = round(self.p * 65536) - 32768  # int16 r >= threshold keeps, P(drop) = p (to 2**-16)
        self.scale = 1.0 / (1.0 - self.p)
        self.predrawn = False  # compiled CPU path: multiply by `keep_scale`, drawn eagerly by `predraw`
        self.register_buffer("keep_scale", torch.empty(0), persistent=False)
        self._words64: Optional[torch.Tensor] = None  # the random words behind `keep_scale`, redrawn in place

    def _keep_scale(self, words: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out`` (same shape as the int16 ``words``) <- ``0`` or ``1 / (1 - p)``: the comparison writes 0/1
        straight into ``out``'s dtype (no bool tensor and no conversion pass: 38 us against 176 us for 131072
        entries on this project's CPU)."""
        torch.ge(words, self.threshold, out=out)
        return out.mul_(self.scale)

    def predraw(self, numel: int) -> None:
        """Draw the mask of the next compiled pass (``numel`` entries, as ``0`` or ``1 / (1 - p)`` float32, from
        the very words an eager pass of that size draws from the global CPU generator) in place into the
        ``keep_scale`` buffer, and switch the compiled forward to multiply by it. The buffer keeps its identity
        from call to call (no module attribute set per call). Each predraw serves one forward pass."""
        words64 = self._words64
        if self.keep_scale.numel() != numel or words64 is None or words64.device != self.keep_scale.device:
            words64 = torch.empty((numel + 3) // 4, dtype=torch.int64, device=self.keep_scale.device)
            self._words64, self.keep_scale = words64, torch.empty(numel, device=self.keep_scale.device)
        words64.random_(-2**63, 2**63 - 1)
        self._keep_scale(words64.view(torch.int16)[:numel], self.keep_scale)
        self.predrawn = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(..., n)`` -> same shape, dtype and device."""
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or (_compiling() and _bit_keep_mask_op is None):
            return F.dropout(x, self.p, training=True)
        if not _compiling():
            words = _random_words(x.numel(), x.device).view(x.shape)
            return x * self._keep_scale(words, torch.empty(x.shape, dtype=x.dtype, device=x.device))
        if not self.predrawn:
            return x * (_bit_keep_mask_op(x, self.threshold).to(x.dtype) * self.scale)
        if self.keep_scale.numel() != x.numel():  # checked while tracing (static shapes): no runtime cost
            raise RuntimeError(f"BitDropout: {self.keep_scale.numel()} predrawn mask entries for an input of "
                               f"{x.numel()} entries; call predraw({x.numel()}) before the compiled pass")
        return x * self.keep_scale.view(x.shape).to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class OutputLinear(nn.Linear):
    """``nn.Linear`` that computes in float32 even inside ``torch.autocast`` (same parameters and state dict).

    The output layers of the flow's networks give ``log sigma(s)`` and the coupling shifts, which are divided by
    ``sigma(s)`` (as small as ``e^-5``) on the way to ``z0``: bf16's 8-bit mantissa there would put errors of
    order 1 into the soft Q. Under ``train.amp=bf16`` only the hidden layers (most of the FLOPs) run in bf16.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in_features)`` of any float dtype -> float32 ``(..., out_features)``."""
        if torch.is_autocast_enabled(x.device.type) if _AUTOCAST_TAKES_DEVICE else torch.is_autocast_enabled():
            with torch.autocast(device_type=x.device.type, enabled=False):
                return F.linear(x.float(), self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


class Swish(nn.Module):
    """``x * sigmoid(beta * x)`` with a learnable ``beta`` ``(dim,)`` float32, one per unit, initialised to 1 (the
    authors' ``nf/nets.py`` ``Swish``, after Grathwohl et al.'s LSD code; Ramachandran et al. 2017).

    ``x`` ``(..., dim)`` of any float dtype -> same shape and dtype (``beta`` is cast to ``x``'s dtype, so bf16
    hidden layers under ``train.amp=bf16`` stay bf16).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta.to(x.dtype) * x)

    def extra_repr(self) -> str:
        return f"dim={self.beta.numel()}"


def check_activation(activation: str) -> str:
    """``activation`` if it is one of :data:`ACTIVATIONS`.

    Raises:
        ValueError: anything else (message names the value and the accepted ones).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is invalid; accepted: {', '.join(ACTIVATIONS)}")
    return activation


def mlp(in_dim: int, hidden: int, out_dim: int, layer_norm: bool = False, dropout: float = 0.0,
        activation: str = "swish") -> nn.Sequential:
    """Two-hidden-layer MLP ``in_dim -> hidden -> hidden -> out_dim``, each hidden layer ``Linear`` [->
    ``LayerNorm``] -> :class:`Swish` (``activation="swish"``) or ``ReLU`` [-> dropout] (the order of the authors'
    ``nf/nets.py`` ``MLP``); the output layer is an :class:`OutputLinear` (float32 under autocast). ``nn.Linear``'s
    default init; :class:`EBFlowPolicy` applies each network's own init.

    Raises:
        ValueError: unknown ``activation``.
    """
    check_activation(activation)
    layers: List[nn.Module] = []
    dim = in_dim
    for _ in range(2):
        layers.append(nn.Linear(dim, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(Swish(hidden) if activation == "swish" else nn.ReLU())
        if dropout > 0:
            layers.append(BitDropout(dropout))
        dim = hidden
    layers.append(OutputLinear(dim, out_dim))
    return nn.Sequential(*layers)


def _linears(net: nn.Sequential) -> List[nn.Linear]:
    return [module for module in net if isinstance(module, nn.Linear)]


def _init_sigma_net(net: nn.Sequential, activation: str) -> nn.Sequential:
    """``swish``: every weight zero, biases as ``nn.Linear`` left them (reference ``MLP(init="zero")``);
    ``relu``: only the output layer zero (weight and bias)."""
    linears = _linears(net)
    for layer in (linears if activation == "swish" else linears[-1:]):
        nn.init.zeros_(layer.weight)
        if activation == "relu":
            nn.init.zeros_(layer.bias)
    return net


class ShiftHeads(nn.Module):
    """The two learnable reward-shift heads ``b_1(s), b_2(s)``, each ``obs_dim -> hidden -> hidden -> 1``
    (no LayerNorm, no dropout), evaluated together with batched matmuls.

    ``activation="swish"`` (the authors' ``MLP(init="zero")``): :class:`Swish` after each hidden layer (``betas``:
    ``(num_heads, 1, hidden)`` per hidden layer, initialised to 1, one per unit of each head), every weight zero,
    every bias ``nn.Linear``'s default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``. ``"relu"``: ReLU, default init of the
    hidden layers, output layer zero (weight and bias), no ``betas``.

    Mathematically two independent MLPs (paper Sec. 3.3); stacking their weights as ``(2, in, out)`` runs both
    in one ``baddbmm`` per layer instead of two ``addmm`` (fewer kernel launches, same FLOPs).

    Raises:
        ValueError: unknown ``activation``.
    """

    def __init__(self, obs_dim: int, hidden: int = 256, num_heads: int = 2, activation: str = "swish") -> None:
        super().__init__()
        self.activation = check_activation(activation)
        dims = [(obs_dim, hidden), (hidden, hidden), (hidden, 1)]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.betas = nn.ParameterList()  # empty under relu: the state dict of the earlier network
        for i, (fan_in, fan_out) in enumerate(dims):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default init
            last = i == len(dims) - 1
            w_bound = 0.0 if (last or activation == "swish") else bound
            b_bound = 0.0 if (last and activation == "relu") else bound
            self.weights.append(nn.Parameter(torch.empty(num_heads, fan_in, fan_out).uniform_(-w_bound, w_bound)))
            self.biases.append(nn.Parameter(torch.empty(num_heads, 1, fan_out).uniform_(-b_bound, b_bound)))
            if activation == "swish" and not last:
                self.betas.append(nn.Parameter(torch.ones(num_heads, 1, fan_out)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, obs_dim)`` -> ``(B, num_heads)``, float32 whatever the autocast dtype.

        The hidden layers are ``baddbmm`` (bf16 under ``train.amp=bf16``); the ``hidden -> 1`` output layer is a
        float32 multiply-and-sum: as a matmul its output width 1 makes forward and backward degenerate
        (``N = 1``) matmuls, which ran at under 1 GFLOP/s on this project's CPU (about 1 ms of a 256-row update),
        and the shifts carry the value's magnitude (hundreds), too large for bf16's 8-bit mantissa.
        """
        h = obs.unsqueeze(0).expand(self.weights[0].shape[0], -1, -1)
        last = len(self.weights) - 1  # indexing, not slicing: a ParameterList slice wraps its entries into new
        swish = len(self.betas) > 0   # Parameters, which torch.compile cannot trace under torch.func.functional_call
        for i in range(last):
            h = torch.baddbmm(self.biases[i], h, self.weights[i])
            h = h * torch.sigmoid(self.betas[i].to(h.dtype) * h) if swish else torch.relu(h)
        w_out, b_out = self.weights[last], self.biases[last]  # (heads, hidden, 1), (heads, 1, 1)
        out = (h.float() * w_out.transpose(1, 2)).sum(-1) + b_out[:, :, 0]  # (heads, B)
        return out.transpose(0, 1)


def mlp_after_first(net: nn.Sequential, h: torch.Tensor, dropout: bool = True) -> torch.Tensor:
    """The layers of an :func:`mlp` after its first ``Linear``, applied to that layer's output ``h`` (what
    :meth:`EBFlowPolicy.obs_features` gives); ``dropout=False`` skips its dropout layers whatever the mode."""
    for module in list(net)[1:]:
        if dropout or not isinstance(module, (BitDropout, nn.Dropout)):
            h = module(h)
    return h


class AdditiveCoupling(nn.Module):
    """Conditional additive coupling ``u <- m*u + (1-m)*(u + t(m*u, s))`` (volume preserving, log|det| = 0).

    Args:
        mask: ``(d,)`` float tensor of 0/1; entries with 1 pass through and condition the shift.
        obs_dim: observation size; hidden: width of ``t``; dropout: dropout rate inside ``t``.
        activation: ``swish`` (the authors' ``MLP(init="orthogonal")``: orthogonal weights, default biases) or
            ``relu`` (this project's earlier network: orthogonal weights, zero biases).
    """

    def __init__(self, mask: torch.Tensor, obs_dim: int, hidden: int = 64, dropout: float = 0.1,
                 activation: str = "swish") -> None:
        super().__init__()
        d = mask.numel()
        self.register_buffer("mask", mask.float())
        self.net = mlp(d + obs_dim, hidden, d, layer_norm=True, dropout=dropout, activation=activation)
        for layer in _linears(self.net):
            nn.init.orthogonal_(layer.weight)
            if activation == "relu":
                nn.init.zeros_(layer.bias)

    def dropout_sizes(self, batch_size: int) -> List[Tuple[BitDropout, int]]:
        """Each dropout layer of ``t`` in application order with its number of mask entries at ``batch_size``
        rows (it follows a hidden ``Linear``, whose width it takes)."""
        width, sizes = 0, []
        for module in self.net:
            if isinstance(module, nn.Linear):
                width = module.out_features
            elif isinstance(module, BitDropout):
                sizes.append((module, batch_size * width))
        return sizes

    def shift(self, u: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """``(1-m) * t(m*u, s)``: ``(B, d)`` from ``u (B, d)`` and ``obs (B, obs_dim)``."""
        return (1.0 - self.mask) * self.net(torch.cat((self.mask * u, obs), dim=-1))

    def obs_weight(self) -> torch.Tensor:
        """The observation columns of ``t``'s first layer: ``(hidden, obs_dim)``, a view of its weight (the input
        of ``t`` is ``cat(m*u, s)``, so ``W1 cat(m*u, s) = W1[:, :d] m*u + W1[:, d:] s``)."""
        first = self.net[0]
        return first.weight[:, self.mask.numel():]

    def shift_from_obs_features(self, u: torch.Tensor, obs_features: torch.Tensor,
                                dropout: bool = True) -> torch.Tensor:
        """:meth:`shift` given ``obs_features = s W1[:, d:]^T + b1`` ``(B, hidden)`` (computed for all couplings
        at once by :meth:`EBFlowPolicy.obs_features`): the same function, split at the first layer.
        ``dropout=False`` skips the dropout layers whatever the module's mode (as in eval mode)."""
        h = obs_features + F.linear(self.mask * u, self.net[0].weight[:, :self.mask.numel()])
        return (1.0 - self.mask) * mlp_after_first(self.net, h, dropout)

    def forward(self, u: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Generation direction ``z -> a``."""
        return u + self.shift(u, obs)

    def inverse(self, u: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Density direction ``a -> z`` (exact: the masked half is unchanged by ``forward``)."""
        return u - self.shift(u, obs)


class EBFlowPolicy(nn.Module):
    """MEow's EBFlow: stochastic policy, soft Q and exact soft V in one network (paper Sec. 3).

    Args:
        obs_dim: observation size (normalised observations go in).
        action_dim: action size ``d``; actions are in ``(-1, 1)``.
        sigma_max, sigma_min: bounds of ``log sigma(s)`` (spec section 2.1; e.g. -0.3 and -5.0).
        hidden: width of the sigma network and of each coupling network (64).
        num_coupling_pairs: ``K`` pairs of couplings with masks ``m`` then ``1-m`` (2).
        dropout: dropout rate inside the couplings (0.1).
        shift_hidden: width of the two learnable reward-shift heads (256).
        activation: ``swish`` (the authors' network, default) or ``relu`` (this project's earlier network); see
            the module docstring.

    All methods take float32 tensors on the module's device; ``B`` is the batch size.

    Raises:
        ValueError: a non-positive size, ``sigma_min >= sigma_max``, a dropout outside ``[0, 1)`` or an unknown
            activation.
    """

    def __init__(self, obs_dim: int, action_dim: int, sigma_max: float = -0.3, sigma_min: float = -5.0,
                 hidden: int = 64, num_coupling_pairs: int = 2, dropout: float = 0.1,
                 shift_hidden: int = 256, activation: str = "swish") -> None:
        super().__init__()
        check_activation(activation)
        for key, value in (("obs_dim", obs_dim), ("action_dim", action_dim), ("hidden", hidden),
                           ("shift_hidden", shift_hidden)):
            if value < 1:
                raise ValueError(f"{key}={value} is invalid: expected an integer >= 1")
        if num_coupling_pairs < 0:
            raise ValueError(f"num_coupling_pairs={num_coupling_pairs} is invalid: expected >= 0")
        if not sigma_min < sigma_max:
            raise ValueError(f"sigma_min={sigma_min} must be < sigma_max={sigma_max}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} is invalid: expected a value in [0, 1)")
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.sigma_max, self.sigma_min = float(sigma_max), float(sigma_min)
        self.activation = activation
        self.sigma_net = _init_sigma_net(mlp(obs_dim, hidden, action_dim, activation=activation), activation)
        mask = (torch.arange(action_dim) % 2 == 0).float()  # checkerboard [1, 0, 1, 0, ...]
        couplings = []
        for _ in range(num_coupling_pairs):
            couplings.append(AdditiveCoupling(mask, obs_dim, hidden, dropout, activation))
            couplings.append(AdditiveCoupling(1.0 - mask, obs_dim, hidden, dropout, activation))
        self.couplings = nn.ModuleList(couplings)
        self.shift_heads = ShiftHeads(obs_dim, shift_hidden, activation=activation)
        self.log_2pi_term = 0.5 * action_dim * math.log(2.0 * math.pi)
        self._dropout_plan: Optional[Tuple[int, List[Tuple[BitDropout, int]]]] = None  # predraw_dropout's cache

    # ------------------------------------------------------------------ pieces
    def log_sigma(self, obs: torch.Tensor) -> torch.Tensor:
        """``log sigma(s)`` ``(B, d)``: ``sigma_min + (sigma_max - sigma_min) (tanh(h(s)) + 1) / 2``."""
        return self._bound_log_sigma(self.sigma_net(obs))

    def _bound_log_sigma(self, out: torch.Tensor) -> torch.Tensor:
        return self.sigma_min + 0.5 * (self.sigma_max - self.sigma_min) * (torch.tanh(out) + 1.0)

    def obs_features(self, obs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """The observation part of the first layer of the sigma network and of every coupling network, from
        **one** matmul: ``(sigma (B, hidden), coupling_0 (B, hidden), ..., coupling_{2K-1} (B, hidden))``, each
        ``s W^T + b`` (biases included; couplings in :attr:`couplings` order).

        A flow pass runs every coupling on the same ``s``, so the ``obs_dim``-wide part of their first layers can
        be one ``(B, obs_dim) x (obs_dim, (2K+1) hidden)`` product instead of 2K+1 narrow ones, and since ``s`` needs
        no gradient, the backward pass no longer computes the coupling inputs' gradient with respect to ``s``
        (``benchmarks/README.md``: 4-6 % fewer FLOPs in a Humanoid-sized update). Same function as applying each
        network to ``cat(m*u, s)``, up to float rounding.
        """
        firsts = [self.sigma_net[0]] + [coupling.net[0] for coupling in self.couplings]
        weight = torch.cat([firsts[0].weight] + [coupling.obs_weight() for coupling in self.couplings])
        bias = torch.cat([layer.bias for layer in firsts])
        return torch.split(F.linear(obs, weight, bias), [layer.out_features for layer in firsts], dim=-1)

    def _log_sigma_from_features(self, sigma_features: torch.Tensor) -> torch.Tensor:
        """:meth:`log_sigma` from the sigma network's first-layer output (:meth:`obs_features`)."""
        return self._bound_log_sigma(mlp_after_first(self.sigma_net, sigma_features))

    def reward_shifts(self, obs: torch.Tensor) -> torch.Tensor:
        """Learnable reward shifts ``b_j(s)`` of both heads: ``(B, 2)`` (paper Sec. 3.3)."""
        return self.shift_heads(obs)

    def predraw_dropout(self, batch_size: int) -> None:
        """Draw the coupling dropout masks of the next compiled density pass (:meth:`inverse` on ``batch_size``
        rows) eagerly, in the order that pass applies them, so the compiled pass uses the very masks an eager
        pass would draw from the same generator state (:meth:`BitDropout.predraw`; CPU, train mode)."""
        if self._dropout_plan is None or self._dropout_plan[0] != batch_size:
            layers = [entry for coupling in reversed(self.couplings) for entry in coupling.dropout_sizes(batch_size)]
            self._dropout_plan = (batch_size, [(layer, n) for layer, n in layers if layer.p > 0.0])
        for layer, n in self._dropout_plan[1]:
            layer.predraw(n)

    # ------------------------------------------------------------------ generation direction
    def forward(self, obs: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
        """Push noise ``z0`` ``(B, d)`` through the flow; returns actions ``(B, d)`` in ``(-1, 1)`` (coupling
        dropout as the module's mode says)."""
        return self._generate(obs, z0, dropout=True)

    def generate(self, obs: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without coupling dropout whatever the module's mode: how the policy acts (spec
        section 5: acting uses the flow in eval mode), without switching ~40 submodules to eval and back per
        call (0.27 ms on this project's CPU, more than the compiled 1-env action itself)."""
        return self._generate(obs, z0, dropout=False)

    def _generate(self, obs: torch.Tensor, z0: torch.Tensor, dropout: bool) -> torch.Tensor:
        sigma_features, *coupling_features = self.obs_features(obs)
        u = torch.exp(self._log_sigma_from_features(sigma_features)) * z0
        for layer, features in zip(self.couplings, coupling_features):
            u = u + layer.shift_from_obs_features(u, features, dropout)
        return torch.tanh(u)

    def sample(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Action ``(B, d)``: ``z0 ~ N(0, I)`` (stochastic) or ``z0 = 0`` (deterministic; spec section 5)."""
        shape = (obs.shape[0], self.action_dim)
        z0 = torch.zeros(shape, device=obs.device, dtype=obs.dtype) if deterministic else \
            torch.randn(shape, device=obs.device, dtype=obs.dtype)
        return self(obs, z0)

    # ------------------------------------------------------------------ density direction
    def inverse(self, obs: torch.Tensor, action: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Invert the flow at ``action`` ``(B, d)``.

        Returns:
            ``z0`` ``(B, d)``; ``log_sigma`` ``(B, d)``; ``log_det_tanh = -sum_i log(1 - a_i^2 + eps)`` ``(B,)``
            (the log-Jacobian of ``atanh``, spec section 2.3).
        """
        u, log_det_tanh = unsquash(action)
        sigma_features, *coupling_features = self.obs_features(obs)
        for layer, features in zip(reversed(self.couplings), reversed(coupling_features)):
            u = u - layer.shift_from_obs_features(u, features)
        log_sigma = self._log_sigma_from_features(sigma_features)
        return u * torch.exp(-log_sigma), log_sigma, log_det_tanh

    def soft_q(self, obs: torch.Tensor, action: torch.Tensor, alpha: float) -> torch.Tensor:
        """Soft Q of both heads ``(B, 2)`` from **one** flow pass (paper Eq. 11 with LRS, spec section 3)."""
        z0, _, log_det_tanh = self.inverse(obs, action)
        energy = -0.5 * z0.square().sum(-1) + log_det_tanh
        return alpha * (energy.unsqueeze(-1) + self.reward_shifts(obs))

    def soft_v(self, obs: torch.Tensor, alpha: float) -> torch.Tensor:
        """Exact soft V of both heads ``(B, 2)``; needs only the sigma network and the shift heads."""
        log_norm = self.log_sigma(obs).sum(-1) + self.log_2pi_term
        return alpha * (log_norm.unsqueeze(-1) + self.reward_shifts(obs))

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``log pi(a|s)`` ``(B,)`` by the change of variables (equals ``(Q_j - V_j) / alpha``)."""
        z0, log_sigma, log_det_tanh = self.inverse(obs, action)
        return -0.5 * z0.square().sum(-1) - self.log_2pi_term - log_sigma.sum(-1) + log_det_tanh
