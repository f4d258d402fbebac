"""lenet_core: LeNet-5 from scratch in NumPy, every backward pass verified.

The package behind the book *LeNet-5 from Scratch*::

    import lenet_core as lc
    model = lc.lenet5("classic", seed=0)
    model.summary()
"""
from .layers import (AvgPool2D, Conv2D, Dropout, Flatten, Layer, Linear, MaxPool2D, ReLU, Sigmoid, Tanh,
                     conv_output_size)
from .losses import SoftmaxCrossEntropy, log_softmax, softmax
from .models import Sequential, lenet5, mlp
from .optim import SGD, Adam, make_optimizer
from .settings import quick_mode

__version__ = "0.1.0"

__all__ = [
    "Layer", "Conv2D", "AvgPool2D", "MaxPool2D", "Linear", "Flatten", "Tanh", "ReLU", "Sigmoid", "Dropout",
    "conv_output_size", "SoftmaxCrossEntropy", "softmax", "log_softmax", "Sequential", "lenet5", "mlp",
    "SGD", "Adam", "make_optimizer", "quick_mode", "__version__",
]
