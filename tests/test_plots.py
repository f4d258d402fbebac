"""Tests for lenet_core.plots: every figure draws, with its title and labels."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import lenet_core as lc  # noqa: E402
from lenet_core.plots import data_flow  # noqa: E402


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_data_flow_draws_one_box_per_layer_with_the_shapes_the_model_computes():
    model = lc.lenet5("modern", seed=0)
    fig = data_flow(model, names={0: "C1", 11: "output"}, title="flow")
    texts = _texts(fig)
    assert fig.axes[0].get_title() == "flow"
    assert "input" in texts and "C1: " + model[0].describe() in texts and "output: " + model[11].describe() in texts
    shape = (1, 1, 32, 32)
    for layer in model:
        shape = layer.output_shape(shape)
        assert str(tuple(shape[1:])) in texts
        assert f"{int(np.prod(shape[1:])):,}" in texts
    assert f"{model[6].num_params():,} parameters" in texts
    arrows = [c for c in fig.axes[0].get_children() if isinstance(c, matplotlib.text.Annotation)]
    assert len(arrows) == len(model)              # one arrow between each pair of boxes
    plt.close(fig)


def test_data_flow_needs_a_shape():
    model = lc.Sequential([lc.Flatten(), lc.Linear(4, 2)])
    with pytest.raises(ValueError, match="input_shape"):
        data_flow(model)
    fig = data_flow(model, input_shape=(1, 2, 2))
    assert "(2,)" in _texts(fig)
    plt.close(fig)
