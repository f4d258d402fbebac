"""lenet_core: LeNet-5 from scratch in NumPy, every backward pass verified.

The package behind the book *LeNet-5 from Scratch*::

    import lenet_core as lc
    images, labels = lc.load_mnist("train")
    x = lc.prepare_lenet_input(images)                 # float32 (N, 1, 32, 32)
    model = lc.lenet5("classic", seed=0)
    model.summary()
    history = lc.fit(model, lc.Adam(model, 1e-3), x, labels, epochs=2)

Modules, from the bottom of the stack up (each imports only modules listed before it):

* files and terminals: ``files`` (write a file atomically, clean up after killed writes),
  ``progress`` (progress bars only in a terminal or notebook);
* data: ``idx`` (the IDX file format), ``download`` (mirrors, checksums), ``mnist``
  (find, download, load a split), ``preprocess`` (scale, pad, standardize),
  ``batches`` (mini-batches, train/validation split), ``digits`` (your own images);
* the maths: ``init``, ``layers`` (every layer, plainly written: what the chapters
  print), ``losses``, ``network`` (``Sequential``), ``reference`` (loop versions),
  ``gradcheck``;
* the speed: ``fast`` (the fast engine: the same layers arranged for speed, tested equal
  to ``layers``; its docstring says which engine runs when);
* models and training: ``models`` (LeNet-5, MLPs), ``optim``, ``schedules``,
  ``history``, ``checkpoint``, ``parallel`` (batches split over processes),
  ``training`` (``fit``, ``evaluate``, ``predict``);
* looking inside: ``explain`` (saliency, integrated gradients), ``plots``,
  ``widgets`` (ipywidgets), ``webexport`` (a LeNet-5 as one JSON file for the network
  that runs in the book's pages), ``live`` (that network as a widget; imports anywidget),
  ``torch_compat`` (needs PyTorch); ``cli`` on top.
"""
from ._version import __version__
from .checkpoint import load_checkpoint, save_checkpoint
from .digits import preprocess_digit_image
from .layers import (AvgPool2D, Conv2D, Dropout, Flatten, Layer, Linear, MaxPool2D, ReLU, Sigmoid, Tanh,
                     conv_output_size)
from .losses import SoftmaxCrossEntropy, log_softmax, softmax
from .mnist import load_mnist
from .models import lenet5, mlp
from .network import Sequential, eval_mode
from .optim import SGD, Adam, make_optimizer
from .parallel import DataParallel
from .preprocess import MNIST_MEAN, MNIST_STD, prepare_lenet_input, standardize
from .settings import quick_mode, quick_mode_notice
from .training import History, TrainingDiverged, evaluate, fit, predict

__all__ = [
    "Layer", "Conv2D", "AvgPool2D", "MaxPool2D", "Linear", "Flatten", "Tanh", "ReLU", "Sigmoid", "Dropout",
    "conv_output_size", "SoftmaxCrossEntropy", "softmax", "log_softmax", "Sequential", "eval_mode", "lenet5",
    "mlp", "SGD", "Adam", "make_optimizer", "DataParallel", "quick_mode", "quick_mode_notice", "load_mnist",
    "prepare_lenet_input", "standardize", "MNIST_MEAN", "MNIST_STD", "fit", "evaluate", "predict", "History",
    "TrainingDiverged", "save_checkpoint", "load_checkpoint", "preprocess_digit_image", "__version__",
]
