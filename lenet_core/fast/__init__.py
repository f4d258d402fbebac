"""The fast engine: the same network, arranged for speed, behind the same interface.

:mod:`lenet_core.layers` is the book's code, written to be read as maths. This package
holds everything that makes it fast without changing a single result beyond float
rounding (the tests compare every fast layer with its plain twin over random shapes:
float64 to 1e-12, float32 to 1e-5):

* :mod:`lenet_core.fast.layers` -- :class:`FastConv2D` (batch-last memory, reused
  im2col buffers, chunks that stay in the CPU's cache in evaluation mode, the next
  activation fused in), :class:`FastAvgPool2D`, :class:`FastMaxPool2D` (strided-slice
  loops that keep the memory order), :class:`FastTanh` (a rational ``tanh``),
  :class:`FastReLU`;
* :mod:`lenet_core.fast.tanh` -- the float32 ``tanh`` made of multiplications;
* :mod:`lenet_core.fast.network` -- :class:`FastSequential` (for inference, convolution,
  activation and pooling fused) and :func:`to_fast` / :func:`to_plain`;
* :mod:`lenet_core.fast.threads` -- BLAS on one thread during the network's passes.

**Which engine runs, in one place.** :func:`lenet_core.lenet5` and
:func:`lenet_core.mlp` build the fast engine unless asked for ``engine="plain"``, and
:func:`lenet_core.load_checkpoint` rebuilds a saved model on the fast engine (a
checkpoint stores no engine: both give the same file). :func:`lenet_core.fit`,
``evaluate`` and ``predict`` run the model they are given as it is, and their worker
processes (:mod:`lenet_core.parallel`) build the same engine. A layer built by hand,
``lenet_core.Conv2D(1, 6, 5)``, is the plain one; ``to_fast(model)`` /
``to_plain(model)`` switch a whole network, sharing its weights and gradients.
"""
from .layers import FAST_TWINS, FastAvgPool2D, FastConv2D, FastMaxPool2D, FastReLU, FastTanh
from .network import ENGINES, FastSequential, engine_of, to_fast, to_plain

__all__ = ["FastConv2D", "FastAvgPool2D", "FastMaxPool2D", "FastTanh", "FastReLU", "FAST_TWINS",
           "FastSequential", "to_fast", "to_plain", "engine_of", "ENGINES"]
