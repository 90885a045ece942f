"""Parameters as views of one contiguous buffer: Adam, gradient clipping, zeroing and the Polyak update as single
tensor ops instead of loops over the network's tensors.

The EBFlow holds 64 parameter tensors (52 with ``train.activation=relu``, the network the next figures were measured
on). On this project's CPU, fused Adam, foreach ``clip_grad_norm_``, foreach Polyak and ``zero_grad`` over those
lists took about 2 ms of a 256-row update (14 ms); on one flat buffer they are a handful of kernels
(``benchmarks/README.md``). The technique is the one of Apex's and DeepSpeed's flat fp32 master buffers.

Each parameter keeps its ``nn.Parameter`` object, name and shape (``state_dict`` and checkpoints are unchanged);
only its storage becomes a slice of :attr:`FlatParams.data`. Its ``.grad`` is a slice of :attr:`FlatParams.grad`,
into which autograd accumulates in place, so the buffer must be zeroed with :meth:`FlatParams.zero_grad` (never
``optimizer.zero_grad(set_to_none=True)``, which would detach the slices).
"""

from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn


class FlatParams:
    """Re-seat ``params`` (same device and dtype) as views of one flat buffer.

    Args:
        params: the parameters, in a fixed order (e.g. ``list(module.parameters())``); their current values are
            kept. with_grad: also give them ``.grad`` views of a zeroed flat gradient buffer.

    Attributes:
        data: ``(P,)`` the values of all parameters, concatenated (``P`` = total number of elements).
        grad: ``(P,)`` their gradients (``with_grad``), or None.
        param: an ``nn.Parameter`` over :attr:`data` whose ``.grad`` is :attr:`grad`: what the optimizer steps.

    Raises:
        ValueError: no parameters, or parameters on different devices or of different dtypes.
    """

    def __init__(self, params: List[nn.Parameter], with_grad: bool = True) -> None:
        if not params:
            raise ValueError("FlatParams needs at least one parameter")
        kinds = {(p.device, p.dtype) for p in params}
        if len(kinds) != 1:
            raise ValueError(f"FlatParams needs parameters of one device and dtype, got {sorted(map(str, kinds))}")
        self.params = list(params)
        self.numels = [p.numel() for p in self.params]
        self.shapes = [p.shape for p in self.params]
        self.data = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.param = nn.Parameter(self.data, requires_grad=with_grad)
        self.grad = torch.zeros_like(self.data) if with_grad else None
        self.param.grad = self.grad
        with torch.no_grad():
            for p, view in zip(self.params, self.views(self.data)):
                p.data = view
            if self.grad is not None:
                for p, view in zip(self.params, self.views(self.grad)):
                    p.grad = view

    def views(self, flat: torch.Tensor) -> List[torch.Tensor]:
        """Per-parameter views ``[(shape of p) for p in params]`` of a ``(P,)`` tensor."""
        return [chunk.view(shape) for chunk, shape in zip(torch.split(flat, self.numels), self.shapes)]

    def is_intact(self) -> bool:
        """True while the parameters still live in :attr:`data` (``Module.to`` or ``p.data = ...`` breaks it)."""
        return self.params[0].data_ptr() == self.data.data_ptr()

    def zero_grad(self) -> None:
        """Zero all gradients with one fill (the views stay attached)."""
        if self.grad is not None:
            self.grad.zero_()


def adam_state_to_per_param(optimizer: torch.optim.Optimizer, flat: FlatParams) -> Dict[str, Any]:
    """``optimizer.state_dict()`` of an Adam over ``[flat.param]``, rewritten as if Adam ran over ``flat.params``
    one by one (the format of checkpoints written before the flat buffer): moments split per parameter, the step
    counter repeated. Tensors are copies.
    """
    state = optimizer.state_dict()
    (group,) = state["param_groups"]
    entry = state["state"].get(group["params"][0])
    per_param: Dict[int, Dict[str, Any]] = {}
    if entry is not None:
        for i in range(len(flat.params)):
            per_param[i] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() == 1 and value.numel() == flat.data.numel():
                for i, view in enumerate(flat.views(value)):
                    per_param[i][key] = view.clone()
            else:
                for i in range(len(flat.params)):
                    per_param[i][key] = value.clone() if isinstance(value, torch.Tensor) else value
    return {"state": per_param, "param_groups": [dict(group, params=list(range(len(flat.params))))]}


def adam_state_from_per_param(state: Dict[str, Any], flat: FlatParams) -> Dict[str, Any]:
    """Inverse of :func:`adam_state_to_per_param`: a per-parameter Adam state dict -> one for ``[flat.param]``.

    Raises:
        ValueError: not one param group over ``len(flat.params)`` parameters, a moment whose shape differs from
            its parameter's, or parameters with different step counters (the flat buffer has one).
    """
    groups = state.get("param_groups", [])
    if len(groups) != 1 or len(groups[0].get("params", [])) != len(flat.params):
        found = [len(g.get("params", [])) for g in groups]
        raise ValueError(f"optimizer state has param groups of sizes {found}; expected one group of "
                         f"{len(flat.params)} parameters")
    ids = groups[0]["params"]
    entries = [state["state"].get(i) for i in ids]
    group = dict(groups[0], params=[0])
    if all(e is None for e in entries):
        return {"state": {}, "param_groups": [group]}
    if any(e is None for e in entries):
        raise ValueError("optimizer state covers only some parameters; expected all or none")
    merged: Dict[str, Any] = {}
    for key in entries[0]:
        values = [e[key] for e in entries]
        first = values[0]
        if isinstance(first, torch.Tensor) and first.dim() > 0:
            for i, (value, p) in enumerate(zip(values, flat.params)):
                if value.shape != p.shape:
                    raise ValueError(f"optimizer parameter {i} {key}: expected shape {tuple(p.shape)}, "
                                     f"found {tuple(value.shape)}")
            merged[key] = torch.cat([v.reshape(-1) for v in values]).to(flat.data.device)
        else:
            if any(not torch.equal(torch.as_tensor(v), torch.as_tensor(first)) for v in values[1:]):
                raise ValueError(f"optimizer state {key!r} differs between parameters; the flat buffer needs one")
            merged[key] = first
    return {"state": {0: merged}, "param_groups": [group]}
