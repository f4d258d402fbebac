"""lenet_core.live: the widget of the page 'Draw a digit' (its JavaScript is tested in the browser,
tests/browser/test_live_page.py)."""
import numpy as np
import pytest

import lenet_core as lc
from lenet_core.live import ESM_FILES, LiveLeNet, css_source, esm_source
from lenet_core.webexport import WebExportError, export_model, read_web_export, to_web_json


def test_the_module_joins_the_three_files_and_fits_in_a_script_element():
    esm = esm_source()
    assert ESM_FILES == ("digit.js", "lenet.js", "live.js")
    assert "export function toMnist28" in esm and "export class Conv2D" in esm and "export default { render }" in esm
    assert "</script" not in esm.lower() and "<!--" not in esm
    assert ".lenet-live" in css_source()


def test_networks_in_every_accepted_form(tmp_path):
    model = lc.lenet5("classic", seed=0)
    ckpt = lc.save_checkpoint(tmp_path / "c.npz", lc.lenet5("modern", seed=1), extra={"train_args": {"normalize": True}})
    export = export_model(lc.lenet5("classic", seed=2), tmp_path / "e.web.json", standardize=False)
    w = LiveLeNet({"model": model, "checkpoint": lc.load_checkpoint(ckpt), "npz": ckpt, "export": export,
                   "text": export.read_text(), "webmodel": read_web_export(export)}, standardize=True)
    assert list(w.models) == ["model", "checkpoint", "npz", "export", "text", "webmodel"] and w.variant == "model"
    assert read_web_export(w.models["model"]).standardize
    assert read_web_export(w.models["npz"]).variant == "modern" and read_web_export(w.models["npz"]).standardize
    assert not read_web_export(w.models["webmodel"]).standardize
    np.testing.assert_array_equal(read_web_export(w.models["text"]).model.layers[0].params["W"],
                                  lc.lenet5("classic", seed=2).layers[0].params["W"])


def test_a_model_needs_to_say_how_its_inputs_are_prepared():
    with pytest.raises(ValueError, match="standardize"):
        LiveLeNet({"classic": lc.lenet5("classic", seed=0)})
    with pytest.raises(ValueError, match="at least one"):
        LiveLeNet({})
    with pytest.raises(TypeError):
        LiveLeNet({"x": 3}, standardize=False)
    with pytest.raises(WebExportError):
        LiveLeNet({"x": "{\"format\": \"nope\"}"})


def test_samples_and_set_model():
    images = np.zeros((3, 28, 28), np.uint8)
    images[:, 5:20, 10:14] = 255
    w = LiveLeNet({"classic": lc.lenet5("classic", seed=0)}, standardize=False, samples=(images, [1, 1, 7], [4, 9, 11]))
    assert w.samples["labels"] == [1, 1, 7] and w.samples["names"][2] == "a 7 (test image 11)"
    assert len(w.samples["images"]) == 4 * ((3 * 784 + 2) // 3)   # base64 of the gray levels
    w.set_model("mine", lc.lenet5("modern", seed=0), standardize=True)
    assert w.variant == "mine" and set(w.models) == {"classic", "mine"}
    w.set_model("other", to_web_json(lc.lenet5("classic", seed=0), standardize=False), show=False)
    assert w.variant == "mine"
    assert w.input is None and w.prediction == -1
    w.digit = list(np.linspace(-1, 1, 1024))
    assert w.input.shape == (1, 1, 32, 32) and w.input.dtype == np.float32
    with pytest.raises(ValueError, match="uint8"):
        LiveLeNet({"c": lc.lenet5("classic", seed=0)}, standardize=False, samples=(images.astype(float), [1, 1, 7]))
    with pytest.raises(ValueError, match="labels"):
        LiveLeNet({"c": lc.lenet5("classic", seed=0)}, standardize=False, samples=(images, [1]))
