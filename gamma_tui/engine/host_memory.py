"""Host memory for large ensemble activations: keep freed heap memory for the next step.

glibc's malloc serves blocks above 32 MiB with fresh mmap pages and unmaps them on free, so an
ensemble whose activations are tens of MiB (a CNN of 24 members: 88 MiB for the first layer)
page-faults and zero-fills every temporary, every step. On the development machine that made a
ReLU over 88 MiB take 45 ms instead of 8 ms. `retain_freed_memory` tells malloc to serve every
block from its heap and never give the heap back, so each step reuses the pages of the last
one. The heap then stays at the largest step's size until the process ends, which is what a
worker wants. No effect off glibc (macOS, Windows, musl) or on GPU memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_done = False


def retain_freed_memory() -> bool:
    """Make malloc keep freed memory (once per process); whether it took effect.

    GAMMA_TUI_RETAIN_MEMORY=0 leaves malloc alone.
    """
    global _done
    if _done:
        return True
    if os.environ.get("GAMMA_TUI_RETAIN_MEMORY") == "0":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # the largest C int: a heap top of up to 2 GiB free stays mapped
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _done
