"""Multi-process data parallel training with ``torchrun`` (NCCL on GPU, gloo on CPU).

Each rank owns its env batch and replay buffer and acts with its own seed (``seed + rank``); gradients are
averaged with one all-reduce per update and the observation normaliser merges every rank's batch moments, so
parameters and normaliser stay identical on all ranks. Rank 0 logs, evaluates and checkpoints.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """``rank``/``world_size``/``local_rank`` of this process (single process: 0/1/0)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group started by ``torchrun`` (reads ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``).

    Backend: NCCL for CUDA training, gloo otherwise. Single-process runs return ``DistInfo()`` untouched. The group
    is left at interpreter exit (:func:`destroy_distributed`).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        atexit.register(destroy_distributed)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def destroy_distributed() -> None:
    """Leave the process group (``dist.destroy_process_group``) if one is joined; registered at exit by
    :func:`init_distributed`.

    Without it the group is torn down during interpreter finalisation, where gloo's worker threads can abort the
    process (``terminate called without an active exception``, exit code -6) after a run that finished: torchrun
    then reports the job as failed (seen in this project's 2-rank CI test; pytorch/pytorch#190489, #179291).
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy ``module``'s parameters and buffers from rank ``src`` to all ranks."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src)


def all_reduce_gradients(params: List[torch.nn.Parameter], world_size: int) -> None:
    """Average ``p.grad`` over ranks with one flat all-reduce (missing grads count as zero)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        if p.grad is None:
            p.grad = flat[offset:offset + n].view_as(p).clone()
        else:
            p.grad.copy_(flat[offset:offset + n].view_as(p))
        offset += n


def world_size() -> int:
    """Ranks of the torchrun process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (no-op when not distributed); returns ``tensor``."""
    if world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def params_in_sync(module: torch.nn.Module) -> Optional[bool]:
    """True if every rank holds bit-identical parameters (checked at the end of training); None if single."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    flat = torch.cat([p.detach().reshape(-1).double() for p in module.parameters()])
    lo, hi = flat.clone(), flat.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    return bool(torch.equal(lo, hi))
