"""Deployable deterministic policies: TorchScript and ONNX, with the observation normaliser inside.

The exported graph computes the agent's deterministic action (MEow: the flow at ``z0 = 0``, spec section 5)
from a raw ``(B, obs_dim)`` float32 observation; output ``(B, action_dim)`` float32
in ``(-1, 1)``. ONNX uses ``torch.onnx.export`` (opset 17, dynamic batch axis); verified with onnxruntime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import torch
from torch import nn

from meow_isaac.normalization import RunningObsNormalizer

FORMATS = ("onnx", "torchscript")


class DeterministicPolicy(nn.Module):
    """``obs (B, obs_dim) -> action (B, action_dim)``: normaliser + an agent's deterministic actor (eval mode)."""

    def __init__(self, actor: nn.Module, normalizer: RunningObsNormalizer) -> None:
        super().__init__()
        self.actor = actor.eval()
        self.normalizer = normalizer.eval()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.normalizer(obs))


def export_policy(actor: nn.Module, normalizer: RunningObsNormalizer, obs_dim: int, path: Union[str, Path],
                  fmt: str) -> Path:
    """Write ``actor`` (normalised obs -> action, see ``Agent.deterministic_actor``) with the normaliser in front
    to ``path`` in ``fmt`` (``onnx`` or ``torchscript``); returns the path.

    Raises:
        ValueError: unknown ``fmt``.
        ImportError: ONNX export needs the ``onnx`` package (``pip install 'meow-isaac[export]'``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"export={fmt!r} is invalid; accepted: {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = DeterministicPolicy(actor, normalizer).cpu().float().eval()
    example = torch.zeros(2, obs_dim)
    with torch.no_grad():
        if fmt == "torchscript":
            torch.jit.trace(module, example).save(str(path))
        else:
            try:
                import onnx  # noqa: F401
            except ImportError as err:
                raise ImportError("export=onnx needs onnx: pip install 'meow-isaac[export]'") from err
            torch.onnx.export(module, (example,), str(path), input_names=["obs"], output_names=["action"],
                              dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}}, opset_version=17,
                              dynamo=False)
    return path
