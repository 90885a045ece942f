"""Is the wheel set of ``benchmarks/gpu_wheels.sh`` complete for the GPU machine? (``gpu_wheels.sh --check``)

Reads every wheel's ``METADATA`` in ``DIR/base`` and in the warp-lang wheel reassembled from ``DIR/warp*/`` (checked
against ``DIR/base/warp.sha256``, as ``benchmarks/gpu_check.py install`` does there), evaluates each
``Requires-Dist`` marker for CPython 3.12 on x86-64 Linux (no extras asked, except those a requirement names), and
checks that each requirement is either a wheel of the set (its version inside the specifier) or a package that the
GPU machine's image holds (:data:`IMAGE`, from ``/work/.library/device/KINDS.md``, read 2026-11-17; versions there
are not known, so only names are checked). Extras of an image package (``etils[epath]``) are resolved from the
same package installed here, when it is. Exit 1 and one line per gap when incomplete.

Run: ``python benchmarks/gpu_wheels_check.py benchmarks/wheels``
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import re
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import Dict, List, Set, Tuple

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

# The GPU machine's Python packages (KINDS.md, "Python packages already there", nvidia-h200, 2026-11-17).
IMAGE = set(canonicalize_name(n) for n in """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-
pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers
flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2
joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-
extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-
cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-
cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx
onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-
checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf
psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark
pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich
sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-
transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions
typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())
TARGET = dict(default_environment(), python_version="3.12", python_full_version="3.12.3", sys_platform="linux",
              platform_system="Linux", platform_machine="x86_64", implementation_name="cpython",
              platform_python_implementation="CPython", os_name="posix")


def _metadata(wheel: Path) -> Tuple[str, Version, List[str]]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if re.match(r"[^/]+\.dist-info/METADATA$", n))
        meta = Parser().parsestr(archive.read(name).decode())
    return canonicalize_name(meta["Name"]), Version(meta["Version"]), meta.get_all("Requires-Dist") or []


def _applies(req: Requirement, extras: Set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate(dict(TARGET, extra=e)) for e in (extras or {""}))


def _warp_wheel(wheels: Path, tmp: Path) -> Tuple[List[Path], List[str]]:
    sums = wheels / "base" / "warp.sha256"
    if not sums.is_file():
        return [], ["note: no warp.sha256 (gpu_wheels.sh --no-warp): warp-lang and mujoco-warp's needs not checked"]
    want, name = sums.read_text().split()[:2]
    parts = sorted(glob.glob(str(wheels / "warp*" / "warp.part-*")), key=lambda p: Path(p).name)
    wheel = tmp / name
    with open(wheel, "wb") as out:
        for part in parts:
            out.write(Path(part).read_bytes())
    if hashlib.sha256(wheel.read_bytes()).hexdigest() != want:
        return [], [f"GAP: the warp parts {[Path(p).name for p in parts]} do not reassemble into {name}"]
    return [wheel], [f"ok: {name} reassembled from {len(parts)} parts, sha256 matches"]


def main() -> int:
    wheels = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/wheels")
    with tempfile.TemporaryDirectory() as tmp:
        extra_wheels, lines = _warp_wheel(wheels, Path(tmp))
        found: Dict[str, Tuple[Version, List[str]]] = {}
        for wheel in sorted((wheels / "base").glob("*.whl")) + extra_wheels:
            name, version, requires = _metadata(wheel)
            if name in found:
                lines.append(f"GAP: two wheels of {name} ({found[name][0]} and {version}): pip would stop")
            found[name] = (version, requires)
    gaps = [line for line in lines if line.startswith("GAP")]
    # (requirement, extras asked of the requiring package) still to check; start from every wheel with no extras
    queue = [(Requirement(r), set(), name) for name, (_, reqs) in found.items() for r in reqs]
    seen: Set[Tuple[str, str]] = set()
    while queue:
        req, extras, by = queue.pop()
        if not _applies(req, extras):
            continue
        key = (str(req), by)
        if key in seen:
            continue
        seen.add(key)
        name = canonicalize_name(req.name)
        if name in found:
            version, reqs = found[name]
            ok = req.specifier.contains(version, prereleases=True)
            line = f"{'ok' if ok else 'GAP'}: {by} needs {req} -> wheel {name} {version}"
            lines.append(line)
            gaps += [] if ok else [line]
            queue += [(Requirement(r), set(req.extras), name) for r in reqs] if req.extras else []
        elif name in IMAGE:
            lines.append(f"ok: {by} needs {req} -> in the GPU image (version not known here)")
            if req.extras:
                try:
                    reqs = importlib.metadata.requires(req.name) or []
                except importlib.metadata.PackageNotFoundError:
                    lines.append(f"note: {req.name}[{','.join(req.extras)}]: not installed here, extras not checked")
                    continue
                queue += [(Requirement(r), set(req.extras), name) for r in reqs]
        else:
            line = f"GAP: {by} needs {req}: neither a wheel here nor in the GPU image"
            lines.append(line)
            gaps.append(line)
    print("\n".join(sorted(set(lines))))
    print(f"{len(found)} wheels; {'complete' if not gaps else f'{len(gaps)} gaps'}")
    return 1 if gaps else 0


if __name__ == "__main__":
    sys.exit(main())
