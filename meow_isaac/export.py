"""Deployable deterministic policies: ``torch.export`` (``.pt2``), ONNX and legacy TorchScript, with the
observation normaliser inside.

The exported graph computes the agent's deterministic action (MEow: the flow at ``z0 = 0``, spec section 5)
from a raw ``(B, obs_dim)`` float32 observation (input ``obs``, dynamic batch ``B >= 1``); output ``(B, action_dim)``
float32 in ``(-1, 1)``. Formats (``export=``):

* ``pt2``: a ``torch.export`` ExportedProgram saved with ``torch.export.save``; it holds only ATen ops, so it
  loads without this project: ``torch.export.load(path).module()(obs)`` (PyTorch >= 2.1; the API torch 2.13
  recommends in place of TorchScript).
* ``onnx``: ``torch.onnx.export(..., dynamo=True)`` (the exporter torch recommends, its default in 2.13) of the
  module, exported by ``torch.export`` as for ``pt2`` and translated by onnxscript (opset :data:`ONNX_OPSET`); run it
  with onnxruntime (input ``obs`` with batch dimension ``batch``, output ``action``). Needs
  ``pip install 'meow-isaac[export]'`` (onnx, onnxscript, onnxruntime).
* ``torchscript``: legacy ``torch.jit.trace`` (``torch.jit.load`` to run it). ``torch.jit`` is deprecated
  (torch 2.13 warns on ``trace`` and ``load``); kept only while torch still ships it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
import warnings
from pathlib import Path
from typing import Iterator, Union

import torch
from torch import nn

from meow_isaac.normalization import RunningObsNormalizer

FORMATS = ("pt2", "onnx", "torchscript")
SUFFIXES = {"pt2": ".pt2", "onnx": ".onnx", "torchscript": ".pt"}  # file name suffix per format
ONNX_OPSET = 18  # the lowest opset the dynamo exporter writes; onnxruntime >= 1.14 runs it


def batch_dynamic_shapes() -> dict:
    """``dynamic_shapes`` (``torch.export``) of the exported ``forward(obs)``: dimension 0 is the batch, named
    ``batch``, any size >= 1."""
    return {"obs": {0: torch.export.Dim("batch", min=1)}}


class DeterministicPolicy(nn.Module):
    """``obs (B, obs_dim) -> action (B, action_dim)``: normaliser + an agent's deterministic actor (eval mode)."""

    def __init__(self, actor: nn.Module, normalizer: RunningObsNormalizer) -> None:
        super().__init__()
        self.actor = actor.eval()
        self.normalizer = normalizer.eval()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.normalizer(obs))


def check_format(fmt: str) -> str:
    """``fmt`` if it is one of :data:`FORMATS`.

    Raises:
        ValueError: anything else, as ``export=<fmt>; accepted: pt2, onnx, torchscript``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"export={fmt!r} is invalid; accepted: {', '.join(FORMATS)}")
    return fmt


def export_program(module: nn.Module, obs_dim: int) -> "torch.export.ExportedProgram":
    """``torch.export.export`` of ``module`` (``obs (B, obs_dim) -> (B, action_dim)``) with a dynamic batch
    dimension (``B >= 1``)."""
    return torch.export.export(module, (torch.zeros(2, obs_dim),), dynamic_shapes=batch_dynamic_shapes())


def export_policy(actor: nn.Module, normalizer: RunningObsNormalizer, obs_dim: int, path: Union[str, Path],
                  fmt: str) -> Path:
    """Write ``actor`` (normalised obs -> action, see ``Agent.deterministic_actor``) with the normaliser in front
    to ``path`` in ``fmt`` (``pt2``, ``onnx`` or ``torchscript``; see the module docstring); returns the path.
    The module is exported on the CPU in float32, from copies: ``actor`` and ``normalizer`` keep their device,
    dtype and train/eval mode (export mid-training is safe).

    Raises:
        ValueError: unknown ``fmt``.
        ImportError: ONNX export needs ``onnx`` and ``onnxscript`` (``pip install 'meow-isaac[export]'``).
    """
    check_format(fmt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a copy: .cpu()/.float()/.eval() act in place and must not move, cast or freeze the caller's live modules
    module = DeterministicPolicy(copy.deepcopy(actor), copy.deepcopy(normalizer)).cpu().float().eval()
    with torch.no_grad():
        if fmt == "torchscript":
            print("[meow-isaac] export=torchscript is legacy: torch.jit is deprecated (torch 2.13 warns on trace "
                  "and load); export=pt2 (torch.export) or export=onnx replace it", file=sys.stderr)
            with warnings.catch_warnings():  # torch's own DeprecationWarnings say what the line above says
                warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=DeprecationWarning)
                torch.jit.trace(module, torch.zeros(2, obs_dim)).save(str(path))
        elif fmt == "pt2":
            torch.export.save(export_program(module, obs_dim), str(path))
        else:
            missing = [name for name in ("onnx", "onnxscript") if not _importable(name)]
            if missing:
                raise ImportError(f"export=onnx needs {' and '.join(missing)}: pip install 'meow-isaac[export]'")
            with _quiet_onnx_exporter():  # torch.export of the module as in export=pt2, then onnxscript
                torch.onnx.export(module, (torch.zeros(2, obs_dim),), str(path), dynamo=True, input_names=["obs"],
                                  output_names=["action"], dynamic_shapes=batch_dynamic_shapes(),
                                  opset_version=ONNX_OPSET, verbose=False)
    return path


@contextlib.contextmanager
def _quiet_onnx_exporter() -> Iterator[None]:
    """Hide what the dynamo ONNX exporter (torch 2.13, onnxscript 0.7) prints that says nothing about this export:
    a ``torchvision is not installed`` log line per torchvision op and a ``FutureWarning`` about pytree's
    ``LeafSpec``. Errors still show (logger ``torch.onnx`` at ERROR while exporting, then restored)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True
