"""Time one MEow update: ours (``MEowAgent.update``) against the reference formulation, on the CPU.

Both sides use the same network (:class:`meow_isaac.flows.EBFlowPolicy`, same sizes and init; by default the
authors' network with learnable-beta Swish, ``--activation relu`` for the earlier ReLU one) on the same sampled
:class:`meow_isaac.replay.Batch`; only the formulation of the update differs.

*Ours* (``meow_isaac/agents/meow.py``): one flow pass on the B rows gives Q of both shift heads; the target's
exact V uses only its sigma network and shift heads (no coupling pass); foreach Adam, foreach
``clip_grad_norm_``, one ``torch._foreach_lerp_`` for the Polyak update.

*Reference* (:func:`reference_update`; the authors' ``cleanrl/cleanrl/meow_continuous_action.py`` training step,
``FlowPolicy.get_qv`` / ``get_v`` and ``nf/flows.py`` ``CondScaling.get_qv``, GitHub ``ChienFeng-hub/meow``):

* Q: the batch is concatenated with itself; the *whole* inverse flow (atanh, the 4 couplings, sigma network)
  runs on the 2B rows, each coupling network on ``cat(m*u, s)`` (:func:`reference_inverse`). As in
  ``CondScaling.get_qv``, head 1 and head 2 each run on the first B states and head j's shift is added to half
  j, so Q_1 comes from rows [0, B) and Q_2 from rows [B, 2B).
* Target V: ``get_v`` on ``cat(s', s')``: the whole target flow is inverted at a zero action (its coupling
  output is computed and then unused: V depends only on sigma(s') and the heads), then ``min`` of the halves.
* ``F.mse_loss`` over the 2B rows, ``loss[loss != loss] = 0`` (NaN zeroing), ``Adam`` and ``clip_grad_norm_``
  with torch's defaults as the reference calls them (``foreach=None``: the per-parameter loop on CPU, the foreach
  kernels on CUDA) and the reference's per-parameter Polyak update ``tp.data.copy_(tau * p.data + (1 - tau) *
  tp.data)``.

With dropout off (eval mode) both losses are the same number; the script checks this once per size.

Run: ``python benchmarks/bench_update.py [--batch 256,4096] [--threads 1] [--iters 100] [--no-compile]
[--activation swish|relu] [--json out.json]`` ``[--device cuda]`` (on CUDA each timed chunk ends with
``torch.cuda.synchronize``; ``compiled`` is then CUDA graphs, and ``compiled_nograph`` the same compiled code
without them).

*Ours compiled*: the same agent built with ``compile=True`` (``train.compile``): on the CPU the whole update
(loss, ``torch.func`` gradient, clipping, Adam, Polyak) is one ``torch.compile`` graph
(``meow_isaac/agents/fused_step.py``); the first call compiles and is not timed.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from meow_isaac.agents.meow import MEowAgent, meow_loss
from meow_isaac.compile import Compiled
from meow_isaac.cpu_alloc import CHOICES as CPU_MALLOC_CHOICES, retain_freed_memory
from meow_isaac.flows import ACTIVATIONS, BitDropout, EBFlowPolicy, Swish, unsquash
from meow_isaac.replay import Batch, ReplayBuffer

# name: (obs_dim, action_dim, alpha, tau) -- MuJoCo Hopper-v4 / Humanoid-v4 sizes and reference hyperparameters
SIZES = {"Hopper": (11, 3, 0.25, 0.005), "Humanoid": (348, 17, 0.125, 0.0005)}
GAMMA, LR, GRAD_NORM = 0.99, 1e-3, 30.0


class ReferenceSwish(nn.Module):
    """The authors' ``nf/nets.py`` ``Swish``: ``x * sigmoid(beta[None, :] * x)``, ``beta`` ``(dim,)``."""

    def __init__(self, beta: torch.Tensor) -> None:
        super().__init__()
        self.beta = nn.Parameter(beta.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta[None, :] * x)


def to_reference(flow: EBFlowPolicy) -> EBFlowPolicy:
    """A copy of ``flow`` whose shift heads are two separate ``nn.Sequential`` MLPs (as in the reference code)
    holding the same weights as our stacked :class:`~meow_isaac.flows.ShiftHeads`, whose Swish layers are the
    reference's :class:`ReferenceSwish` (same betas; ReLU stays ReLU under ``train.activation=relu``) and whose
    couplings use ``nn.Dropout`` (the reference) instead of :class:`~meow_isaac.flows.BitDropout`."""
    ref = copy.deepcopy(flow)
    heads = nn.ModuleList()
    swish = len(flow.shift_heads.betas) > 0
    for j in range(2):
        layers: List[nn.Module] = []
        for i, (w, b) in enumerate(zip(flow.shift_heads.weights, flow.shift_heads.biases)):
            linear = nn.Linear(w.shape[1], w.shape[2], device=w.device, dtype=w.dtype)  # on the flow's device
            with torch.no_grad():
                linear.weight.copy_(w[j].T)
                linear.bias.copy_(b[j, 0])
            layers.append(linear)
            if i < len(flow.shift_heads.weights) - 1:
                layers.append(ReferenceSwish(flow.shift_heads.betas[i][j, 0]) if swish else nn.ReLU())
        heads.append(nn.Sequential(*layers))
    ref.shift_heads = heads  # type: ignore[assignment]
    for net in [ref.sigma_net] + [coupling.net for coupling in ref.couplings]:
        for i, module in enumerate(net):
            if isinstance(module, Swish):
                net[i] = ReferenceSwish(module.beta)
            elif isinstance(module, BitDropout):  # the reference uses torch's nn.Dropout, not our BitDropout
                net[i] = nn.Dropout(module.p)
    return ref


def reference_inverse(net: EBFlowPolicy, obs: torch.Tensor, action: torch.Tensor):
    """``EBFlowPolicy.inverse`` computed as the reference computes its flow: each coupling network on
    ``cat(m*u, s)`` in turn, the sigma network on ``s`` (ours runs the observation part of all those first layers as
    one matmul, :meth:`EBFlowPolicy.obs_features`). Returns ``z0, log_sigma, log_det_tanh``."""
    u, log_det_tanh = unsquash(action)
    for layer in reversed(net.couplings):
        u = layer.inverse(u, obs)
    log_sigma = net.log_sigma(obs)
    return u * torch.exp(-log_sigma), log_sigma, log_det_tanh


def reference_qv(net: EBFlowPolicy, obs2: torch.Tensor, act2: torch.Tensor, alpha: float):
    """Reference ``FlowPolicy.get_qv`` on a doubled batch ``(2B, .)``: returns ``q, v`` ``(2B,)``.

    The whole inverse flow runs on all 2B rows; each shift head runs on the first B states
    (``CondScaling.get_qv``) and head j's output is added to half j.
    """
    half = obs2.shape[0] // 2
    z0, log_sigma, log_det_tanh = reference_inverse(net, obs2, act2)
    shift = torch.cat((net.shift_heads[0](obs2[:half])[:, 0], net.shift_heads[1](obs2[:half])[:, 0]))
    q = -0.5 * z0.square().sum(-1) + log_det_tanh + shift
    v = log_sigma.sum(-1) + net.log_2pi_term + shift
    return alpha * q, alpha * v


def reference_loss(policy: EBFlowPolicy, target: EBFlowPolicy, batch: Batch, alpha: float, gamma: float,
                   train: bool = True) -> torch.Tensor:
    """Soft Bellman error as the reference training step computes it (see the module docstring)."""
    half = batch.obs.shape[0]
    with torch.no_grad():
        target.eval()
        next_obs2 = torch.cat((batch.next_obs, batch.next_obs), dim=0)
        zero_action = torch.zeros(2 * half, target.action_dim, device=next_obs2.device)
        _, v_old = reference_qv(target, next_obs2, zero_action, alpha)  # get_v
        exact_v_old = torch.min(v_old[:half], v_old[half:])
        target_q = batch.reward + (1.0 - batch.terminated) * gamma * exact_v_old
    policy.train(train)
    q, _ = reference_qv(policy, torch.cat((batch.obs, batch.obs)), torch.cat((batch.action, batch.action)), alpha)
    loss = F.mse_loss(q, torch.cat((target_q, target_q)))
    loss[loss != loss] = 0.0
    return loss.mean()


class ReferenceUpdate:
    """The reference update on its own copies of the policy and target flows."""

    def __init__(self, policy: EBFlowPolicy, target: EBFlowPolicy, alpha: float, tau: float) -> None:
        self.policy, self.target, self.alpha, self.tau = policy, target, alpha, tau
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=LR, foreach=None)  # torch's default

    def update(self, batch: Batch) -> torch.Tensor:
        loss = reference_loss(self.policy, self.target, batch, self.alpha, GAMMA)
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.policy.parameters(), GRAD_NORM, foreach=None)
        self.optimizer.step()
        for param, target_param in zip(self.policy.parameters(), self.target.parameters()):
            target_param.data.copy_(self.tau * param.data + (1 - self.tau) * target_param.data)
        return loss.detach()


def make_batches(obs_dim: int, action_dim: int, batch: int, count: int, seed: int,
                 device: torch.device = torch.device("cpu")) -> List[Batch]:
    """``count`` minibatches sampled from a replay buffer on ``device`` filled with random transitions (drawn on
    the CPU, so that every device gets the same data)."""
    torch.manual_seed(seed)
    num_envs, rows = 16, 256
    replay = ReplayBuffer(num_envs, rows, obs_dim, action_dim, device)
    for _ in range(rows):
        replay.add(*(t.to(device) for t in (
            torch.randn(num_envs, obs_dim), torch.rand(num_envs, action_dim) * 1.98 - 0.99, torch.randn(num_envs),
            torch.randn(num_envs, obs_dim), torch.rand(num_envs) < 0.05, torch.ones(num_envs, dtype=torch.bool))))
    return [replay.sample(batch) for _ in range(count)]


def check_same_loss(agent: MEowAgent, batches: List[Batch]) -> float:
    """Relative difference of the two losses with dropout off (after a few updates so no head is zero)."""
    for b in batches[:20]:
        agent.update(b)
    policy = agent.policy.eval()
    with torch.no_grad():
        ours, _ = meow_loss(policy, agent.target, batches[0], agent.alpha, agent.gamma)
        ref = reference_loss(to_reference(policy), to_reference(agent.target), batches[0], agent.alpha,
                             agent.gamma, train=False)
    return abs(float(ours) - float(ref)) / abs(float(ref))


def time_interleaved(fns: Dict[str, Callable[[Batch], object]], batches: List[Batch], iters: int,
                     chunk: int = 10, warmup: int = 10, sync: Callable[[], None] = lambda: None) -> Dict[str, float]:
    """Median ms/update of each function over rounds of ``chunk`` updates, alternating the order each round.
    ``sync`` (``torch.cuda.synchronize`` on CUDA) runs before and after each timed chunk, so that a chunk's time is
    its device work, not its launches."""
    for fn in fns.values():
        for i in range(warmup):
            fn(batches[i % len(batches)])
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(max(1, iters // chunk)):
        for name in (names if r % 2 == 0 else names[::-1]):
            sync()
            t0 = time.perf_counter()
            for i in range(chunk):
                fns[name](batches[(r * chunk + i) % len(batches)])
            sync()
            samples[name].append((time.perf_counter() - t0) * 1e3 / chunk)
    return {name: statistics.median(v) for name, v in samples.items()}


VARIANTS = {  # name: (compile, amp) of MEowAgent
    "eager": (False, "none"), "compiled": (True, "none"), "eager_bf16": (False, "bf16"),
    "compiled_bf16": (True, "bf16"), "compiled_nograph": (True, "none"),
}
CUDA_ONLY = ("compiled_nograph",)  # on CPU no variant runs CUDA graphs, so "without them" is "compiled" there


def without_cuda_graphs(agent: MEowAgent) -> MEowAgent:
    """``agent`` (built with ``compile=True`` on CUDA) with its loss compiled without CUDA graphs: inductor's
    kernels launched one by one (:class:`~meow_isaac.compile.Compiled` ``cudagraphs=False``), the rest of the
    update as ``compile=True`` runs it. The ``compiled_nograph`` variant."""
    agent._loss_fn = Compiled(meow_loss, agent.device, "the MEow loss (no CUDA graphs)",
                              fixed_args=("policy", "target"), cudagraphs=False)
    return agent


def bf16_loss_error(agent: MEowAgent, batches: List[Batch]) -> float:
    """Relative difference of the loss under ``train.amp=bf16`` against float32 (eval mode, same weights)."""
    policy = agent.policy.eval()
    with torch.no_grad():
        ours, _ = meow_loss(policy, agent.target, batches[1], agent.alpha, agent.gamma)
        with torch.autocast(agent.device.type, dtype=torch.bfloat16):
            low, _ = meow_loss(policy, agent.target, batches[1], agent.alpha, agent.gamma)
    return abs(float(low) - float(ours)) / abs(float(ours))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", default="256,4096", help="comma-separated minibatch sizes B (default 256,4096)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--iters", type=int, default=100, help="timed updates per method and size (default 100)")
    parser.add_argument("--sizes", default="Hopper,Humanoid", help="comma-separated of " + ",".join(SIZES))
    parser.add_argument("--variants", default=None,
                        help="comma-separated variants of ours: " + ", ".join(VARIANTS) + " (default: all that "
                        f"apply to --device; {', '.join(CUDA_ONLY)}: CUDA only)")
    parser.add_argument("--device", default="cpu", help="cpu (default) | cuda | cuda:<i>")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variants")
    parser.add_argument("--malloc", choices=CPU_MALLOC_CHOICES, default="retain",
                        help="retain: glibc keeps freed memory (the runner's cpu_malloc default) | default")
    parser.add_argument("--activation", choices=ACTIVATIONS, default=ACTIVATIONS[0],
                        help="train.activation of both sides (default swish: the authors' network)")
    parser.add_argument("--json", default=None, help="write the results to this path")
    args = parser.parse_args()
    if args.malloc == "retain":
        print(f"cpu_malloc=retain: {'set' if retain_freed_memory() else 'not available here'}")
    torch.set_num_threads(args.threads)
    batch_sizes = [int(b) for b in str(args.batch).split(",")]
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r}: accepted: cpu, cuda, cuda:<i>")
    if device.type not in ("cpu", "cuda") or (device.type == "cuda" and not torch.cuda.is_available()):
        parser.error(f"--device {args.device!r}: accepted: cpu, or cuda[:<i>] where torch sees a CUDA device "
                     f"(here: {'yes' if torch.cuda.is_available() else 'none'})")
    variants = [v for v in (args.variants or ",".join(
        v for v in VARIANTS if device.type == "cuda" or v not in CUDA_ONLY)).split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; accepted: {', '.join(VARIANTS)}")
    if device.type != "cuda" and any(v in CUDA_ONLY for v in variants):
        parser.error(f"--variants {','.join(v for v in variants if v in CUDA_ONLY)}: CUDA only (with --device "
                     "cuda); on CPU no variant uses CUDA graphs")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if args.no_compile:
        variants = [v for v in variants if not VARIANTS[v][0]]
    print(f"torch {torch.__version__}, device {device} ({device_name}), threads {torch.get_num_threads()}, batch "
          f"{batch_sizes}, iters {args.iters}, variants {variants}, activation {args.activation}")

    rows = []
    for name in args.sizes.split(","):
        obs_dim, action_dim, alpha, tau = SIZES[name]
        kwargs = dict(alpha=alpha, tau=tau, gamma=GAMMA, learning_rate=LR, grad_norm=GRAD_NORM,
                      activation=args.activation)
        for batch_size in batch_sizes:
            iters = max(10, args.iters * 256 // max(batch_size, 256))  # equal work per row, at least 10
            batches = make_batches(obs_dim, action_dim, batch_size, 16, seed=0, device=device)
            torch.manual_seed(0)
            check_agent = MEowAgent(obs_dim, action_dim, device, **kwargs)
            rel = check_same_loss(check_agent, batches)
            bf16_rel = bf16_loss_error(check_agent, batches)
            print(f"{name} B={batch_size}: loss check (eval mode, no dropout): |ours - reference| / |reference| "
                  f"= {rel:.2e}; bf16 autocast against float32: {bf16_rel:.2e}")
            if rel > 1e-4:
                raise SystemExit(f"{name}: losses differ by {rel:.2e} relative (> 1e-4)")
            torch.manual_seed(0)
            base = MEowAgent(obs_dim, action_dim, device, **kwargs)
            ref = ReferenceUpdate(to_reference(base.policy), to_reference(base.target), alpha, tau)
            fns: Dict[str, Callable[[Batch], object]] = {"reference": ref.update}
            for variant in variants:
                compile_, amp = VARIANTS[variant]
                torch.manual_seed(0)
                agent = MEowAgent(obs_dim, action_dim, device, compile=compile_, amp=amp, **kwargs)
                if variant == "compiled_nograph":
                    without_cuda_graphs(agent)
                if compile_:
                    t0 = time.perf_counter()
                    agent.update(batches[0])
                    sync()
                    print(f"{name} B={batch_size}: compiled {variant} in {time.perf_counter() - t0:.1f} s")
                fns[variant] = agent.update
            ms = time_interleaved(fns, batches, iters, chunk=max(2, min(10, iters // 5)), warmup=3, sync=sync)
            row = {"size": name, "obs_dim": obs_dim, "action_dim": action_dim, "batch": batch_size,
                   "iters": iters, "reference_ms": ms["reference"], "loss_rel_diff": rel, "bf16_loss_rel_diff": bf16_rel}
            for variant in variants:
                row[f"{variant}_ms"] = ms[variant]
                row[f"{variant}_ratio"] = ms["reference"] / ms[variant]
            rows.append(row)
            print(f"{name} B={batch_size}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items()), flush=True)
            if args.json:  # after every row: a run stopped by a time limit keeps the rows it finished
                meta = {"torch": torch.__version__, "threads": args.threads, "iters": args.iters,
                        "device": str(device), "device_name": device_name, "variants": variants,
                        "activation": args.activation}
                with open(args.json, "w") as f:
                    json.dump({"meta": meta, "results": rows}, f, indent=2)

    header = " | ".join(f"{v} ms (ratio)" for v in variants)
    print(f"\n| size | batch | reference ms/update | {header} |")
    print("|---|---|---|" + "---|" * len(variants))
    for r in rows:
        cells = " | ".join(f"{r[f'{v}_ms']:.2f} ({r[f'{v}_ratio']:.2f}x)" for v in variants)
        print(f"| {r['size']} (obs {r['obs_dim']}, act {r['action_dim']}) | {r['batch']} | {r['reference_ms']:.2f} "
              f"| {cells} |")


if __name__ == "__main__":
    main()
