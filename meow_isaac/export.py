"""Deployable deterministic policies: TorchScript and ONNX, with the observation normaliser inside.

The exported graph computes ``a = tanh(couplings(sigma(norm(s)) * 0))`` (the flow's deterministic action,
spec section 5: ``z0 = 0``) from a raw ``(B, obs_dim)`` float32 observation; output ``(B, action_dim)`` float32
in ``(-1, 1)``. ONNX uses ``torch.onnx.export`` (opset 17, dynamic batch axis); verified with onnxruntime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import torch
from torch import nn

from meow_isaac.flows import EBFlowPolicy
from meow_isaac.normalization import RunningObsNormalizer

FORMATS = ("onnx", "torchscript")


class DeterministicPolicy(nn.Module):
    """``obs (B, obs_dim) -> action (B, action_dim)``: normaliser + deterministic flow action (eval mode)."""

    def __init__(self, policy: EBFlowPolicy, normalizer: RunningObsNormalizer) -> None:
        super().__init__()
        self.policy = policy.eval()
        self.normalizer = normalizer.eval()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.normalizer(obs)
        z0 = torch.zeros(obs.shape[0], self.policy.action_dim, dtype=obs.dtype, device=obs.device)
        return self.policy(x, z0)


def export_policy(policy: EBFlowPolicy, normalizer: RunningObsNormalizer, path: Union[str, Path],
                  fmt: str) -> Path:
    """Write the deterministic policy to ``path`` in ``fmt`` (``onnx`` or ``torchscript``); returns the path.

    Raises:
        ValueError: unknown ``fmt``.
        ImportError: ONNX export needs the ``onnx`` package (``pip install 'meow-isaac[export]'``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"export={fmt!r} is invalid; accepted: {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = DeterministicPolicy(policy, normalizer).cpu().float().eval()
    example = torch.zeros(2, policy.obs_dim)
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
