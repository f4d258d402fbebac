"""How many threads NumPy's BLAS may use: the fast engine runs its products on one.

LeNet-5's matrix products are small (C3's forward product at batch 64 is 16 x 150 by
150 x 6,400). Split over threads, each part is smaller still, and the threads spend
more time waking up, waiting for each other and (when another program holds a core)
spinning than multiplying. So :class:`~lenet_core.fast.network.FastSequential` runs
its forward and backward passes with BLAS on one thread, whatever it is set to outside
(``benchmarks/README.md`` has the measurements); :mod:`lenet_core.parallel` gives every
core a process of its own instead.
"""
from __future__ import annotations

from threadpoolctl import ThreadpoolController

__all__ = ["blas", "blas_threads", "one_blas_thread"]

#: threadpoolctl's handle on the BLAS libraries loaded in this process
blas = ThreadpoolController().select(user_api="blas")


def blas_threads() -> int | None:
    """How many threads NumPy's BLAS uses now (None if no BLAS library was found)."""
    return max((lib.num_threads for lib in blas.lib_controllers), default=None)


def one_blas_thread():
    """Context manager: BLAS on one thread inside, as before outside."""
    return blas.limit(limits=1)
