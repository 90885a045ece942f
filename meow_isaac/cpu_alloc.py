"""Keep freed CPU memory in the process (glibc ``mallopt``), so the update stops paying page faults.

PyTorch's CPU allocator is plain ``malloc``/``free``. glibc serves blocks above ``M_MMAP_THRESHOLD`` (128 KiB to
start, raised dynamically) with a fresh ``mmap`` and returns freed heap tops to the kernel past
``M_TRIM_THRESHOLD``; each update's activations (a Hopper-sized update at batch 256 allocates blocks of 256 KiB
to 1 MiB, at batch 4096 of 4-16 MiB) then come back as new zero pages, one minor page fault per 4 KiB on first
touch. Measured on this project's CPU (``benchmarks/README.md``): 692 faults and about 2 ms of kernel time per
256-row Hopper update, 12,851 faults and 31 ms per 4096-row update (175 ms -> 113 ms with this setting).
This is what ``LD_PRELOAD``-ing jemalloc or tcmalloc does for PyTorch on CPU, in-process and with no extra
package. Memory use then stays at its peak instead of shrinking between updates (the peak is reached at the
first update anyway).

Used by the runner (``cpu_malloc=retain``, the default) and the benchmarks; a no-op off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc <malloc.h>
CHOICES = ("retain", "default")


def retain_freed_memory(mmap_threshold: int = 256 << 20, trim_threshold: int = 512 << 20,
                        top_pad: int = 64 << 20) -> bool:
    """Serve blocks up to ``mmap_threshold`` bytes from the heap and keep up to ``trim_threshold`` bytes of freed
    heap top (``top_pad`` extra per heap growth). Process-wide, for allocations made from now on.

    Returns:
        True if glibc accepted all three settings; False off Linux/glibc or if one was refused (nothing raised).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or no libc found: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    results = [mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)), mallopt(M_TRIM_THRESHOLD, int(trim_threshold)),
               mallopt(M_TOP_PAD, int(top_pad))]
    return all(r == 1 for r in results)
