"""lenet_core: LeNet-5 from scratch in NumPy, every backward pass verified.

The package behind the book *LeNet-5 from Scratch*::

    import lenet_core as lc
    images, labels = lc.load_mnist("train")
    x = lc.prepare_lenet_input(images)                 # float32 (N, 1, 32, 32)
    model = lc.lenet5("classic", seed=0)
    model.summary()
    history = lc.fit(model, lc.Adam(model, 1e-3), x, labels, epochs=2)

Modules: ``layers``, ``losses``, ``models``, ``optim``, ``init``, ``gradcheck``,
``reference`` (loop versions), ``data`` and ``idx`` (MNIST), ``training``,
``schedules``, ``parallel`` (batches split over processes), ``fastmath`` (a float32
tanh), ``checkpoint``, ``digits``, ``explain``, ``plots``, ``widgets`` (imports
ipywidgets), ``torch_compat`` (needs PyTorch), ``cli``.
"""
from .checkpoint import load_checkpoint, save_checkpoint
from .data import load_mnist, prepare_lenet_input
from .digits import preprocess_digit_image
from .layers import (AvgPool2D, Conv2D, Dropout, Flatten, Layer, Linear, MaxPool2D, ReLU, Sigmoid, Tanh,
                     conv_output_size)
from .losses import SoftmaxCrossEntropy, log_softmax, softmax
from .models import Sequential, lenet5, mlp
from .optim import SGD, Adam, make_optimizer
from .parallel import DataParallel
from .settings import quick_mode, quick_mode_notice
from .training import History, TrainingDiverged, evaluate, fit, predict

__version__ = "0.1.0"

__all__ = [
    "Layer", "Conv2D", "AvgPool2D", "MaxPool2D", "Linear", "Flatten", "Tanh", "ReLU", "Sigmoid", "Dropout",
    "conv_output_size", "SoftmaxCrossEntropy", "softmax", "log_softmax", "Sequential", "lenet5", "mlp",
    "SGD", "Adam", "make_optimizer", "DataParallel", "quick_mode", "quick_mode_notice", "load_mnist", "prepare_lenet_input", "fit", "evaluate",
    "predict", "History", "TrainingDiverged", "save_checkpoint", "load_checkpoint", "preprocess_digit_image",
    "__version__",
]
