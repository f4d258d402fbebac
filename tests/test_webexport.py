"""lenet_core.webexport: a LeNet-5 as one JSON file for the in-page network, and back."""
import base64
import json
import zlib

import numpy as np
import pytest

import lenet_core as lc
from lenet_core.cli import main
from lenet_core.webexport import (FORMAT_NAME, WebExportError, checkpoint_web_json, export_checkpoint, export_model,
                                  read_web_export, to_web_json, variant_of)


@pytest.fixture(params=["classic", "modern"])
def variant(request):
    return request.param


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])


def test_round_trip_keeps_every_weight_and_the_variant(variant, tmp_path):
    model = lc.lenet5(variant, seed=3)
    path = export_model(model, tmp_path / "m.web.json", standardize=True, test_accuracy=0.987, test_images=500,
                        description="a test")
    back = read_web_export(path)
    _same_weights(model, back.model)
    assert back.variant == variant and back.standardize and back.test_accuracy == 0.987 and back.test_images == 500
    assert back.mean == pytest.approx(lc.MNIST_MEAN) and back.std == pytest.approx(lc.MNIST_STD)
    assert back.description == "a test" and back.name == model.name
    x = np.random.default_rng(0).random((2, 1, 32, 32), dtype=np.float32)
    np.testing.assert_array_equal(model.forward(x), back.model.forward(x))
    assert read_web_export(path.read_text()).variant == variant   # from the text, too


def test_the_format_is_documented_json(tmp_path):
    meta = json.loads(to_web_json(lc.lenet5("classic", seed=0), standardize=False))
    assert meta["format"] == FORMAT_NAME and meta["format_version"] == 1
    assert [layer["stage"] for layer in meta["layers"]] == ["C1", "C1", "S2", "C3", "C3", "S4", "C5", "C5", "C5",
                                                            "F6", "F6", "output"]
    w = meta["layers"][0]["params"]["W"]
    raw = base64.b64decode(w["data"])
    assert w["shape"] == [6, 1, 5, 5] and len(raw) == 6 * 25 * 4 and zlib.crc32(raw) == w["crc32"]
    np.testing.assert_array_equal(np.frombuffer(raw, "<f4").reshape(6, 1, 5, 5),
                                  lc.lenet5("classic", seed=0).layers[0].params["W"])
    assert meta["preprocessing"] == {"standardize": False, "mean": lc.MNIST_MEAN, "std": lc.MNIST_STD}
    assert meta["test"] is None


def test_dropout_is_left_out_and_float64_becomes_float32():
    model = lc.lenet5("modern", seed=1, dropout=0.3, dtype=np.float64)
    assert variant_of(model) == "modern"
    back = read_web_export(to_web_json(model, standardize=False))
    assert len(back.model.layers) == 12
    np.testing.assert_array_equal(back.model.layers[-1].params["W"], model.layers[-1].params["W"].astype(np.float32))


def test_other_architectures_and_broken_models_are_refused():
    with pytest.raises(WebExportError, match="LeNet-5 only"):
        to_web_json(lc.mlp(), standardize=False)
    with pytest.raises(WebExportError, match="Sequential"):
        to_web_json(object(), standardize=False)
    model = lc.lenet5("classic", seed=0)
    model.layers[0].params["W"][0, 0, 0, 0] = np.nan
    with pytest.raises(WebExportError, match="not finite"):
        to_web_json(model, standardize=False)
    with pytest.raises(WebExportError, match="fraction"):
        to_web_json(lc.lenet5("classic", seed=0), standardize=False, test_accuracy=98.7)
    with pytest.raises(TypeError):
        to_web_json(lc.lenet5("classic", seed=0))   # standardize must be said


def _damage(text, change):
    meta = json.loads(text)
    change(meta)
    return json.dumps(meta)


def _flip_a_byte(meta):
    entry = meta["layers"][3]["params"]["W"]
    raw = bytearray(base64.b64decode(entry["data"]))
    raw[100] ^= 0x40
    entry["data"] = base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(format="something-else"), "not a lenet_core web export"),
    (lambda m: m.update(format_version=99), "version 99"),
    (lambda m: m.update(format_version="1"), "invalid format_version"),
    (lambda m: m.update(variant="fancy"), "variant must be"),
    (lambda m: m.update(preprocessing={"mean": 0.1}), "standardized"),
    (lambda m: m["preprocessing"].update(std=0), "positive std"),
    (lambda m: m["layers"].pop(), "has 12 layers"),
    (lambda m: m["layers"][1].update(type="ReLU"), "layer 1 is"),
    (lambda m: m["layers"][0].update(kernel_size=3), "layer 0 is"),
    (lambda m: m["layers"][9]["params"].pop("b"), "no parameter b"),
    (lambda m: m["layers"][9]["params"]["W"].update(shape=[84, 121]), "needs"),
    (lambda m: m["layers"][0]["params"]["W"].update(data="not base64!"), "base64"),
    (lambda m: m["layers"][0]["params"]["W"].update(data=m["layers"][0]["params"]["W"]["data"][:40]), "bytes"),
    (_flip_a_byte, "checksum"),
])
def test_damaged_exports_are_refused_with_a_reason(change, message):
    text = to_web_json(lc.lenet5("classic", seed=0), standardize=True)
    with pytest.raises(WebExportError, match=message):
        read_web_export(_damage(text, change))


def test_non_finite_weights_in_a_file_are_refused():
    text = to_web_json(lc.lenet5("classic", seed=0), standardize=True)

    def put_inf(meta):
        entry = meta["layers"][11]["params"]["b"]
        raw = np.frombuffer(base64.b64decode(entry["data"]), "<f4").copy()
        raw[2] = np.inf
        entry["data"] = base64.b64encode(raw.tobytes()).decode()
        entry["crc32"] = zlib.crc32(raw.tobytes())

    with pytest.raises(WebExportError, match="not finite"):
        read_web_export(_damage(text, put_inf))


def test_files_that_are_not_exports(tmp_path):
    text = to_web_json(lc.lenet5("classic", seed=0), standardize=True)
    truncated = tmp_path / "cut.web.json"
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(WebExportError, match="not valid JSON"):
        read_web_export(truncated)
    ckpt = lc.save_checkpoint(tmp_path / "c.npz", lc.lenet5("classic", seed=0))
    with pytest.raises(WebExportError, match="checkpoint"):
        read_web_export(ckpt)
    binary = tmp_path / "b.json"
    binary.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(WebExportError, match="not a text file"):
        read_web_export(binary)
    with pytest.raises(FileNotFoundError):
        read_web_export(tmp_path / "absent.web.json")


def test_a_checkpoint_says_how_to_prepare_inputs(tmp_path):
    model = lc.lenet5("modern", seed=0)
    cli_like = lc.save_checkpoint(tmp_path / "cli.npz", model, epoch=3,
                                  extra={"train_args": {"normalize": True, "optimizer": "adam", "lr": 0.001,
                                                        "batch_size": 64},
                                         "test": {"accuracy": 0.91, "images": 2000}})
    back = read_web_export(checkpoint_web_json(cli_like))
    assert back.standardize and back.test_accuracy == 0.91 and back.test_images == 2000 and back.variant == "modern"
    assert "3 epochs" in back.description and "adam" in back.description
    chapter = lc.save_checkpoint(tmp_path / "ch08.npz", model, extra={"chapter": 8})
    back = read_web_export(checkpoint_web_json(lc.load_checkpoint(chapter)))
    assert not back.standardize and back.test_accuracy is None
    out = export_checkpoint(chapter)
    assert out == tmp_path / "ch08.web.json" and out.is_file()
    with pytest.raises(WebExportError, match="overwrite"):
        export_checkpoint(chapter, chapter)


def test_prepare_standardizes_like_lenet_core():
    x = lc.preprocess_digit_image(np.pad(np.full((20, 6), 255, np.uint8), 10))
    wm = read_web_export(to_web_json(lc.lenet5("classic", seed=0), standardize=True))
    np.testing.assert_array_equal(wm.prepare(x), lc.standardize(x))
    wm.standardize = False
    np.testing.assert_array_equal(wm.prepare(x), x)


# -- the command line -------------------------------------------------------------


def test_cli_export(tmp_path, capsys):
    ckpt = lc.save_checkpoint(tmp_path / "net.npz", lc.lenet5("classic", seed=0),
                              extra={"train_args": {"normalize": True}})
    assert main(["export", str(ckpt), str(tmp_path / "out.web.json")]) == 0
    out = capsys.readouterr().out
    assert "out.web.json" in out and "KB" in out
    assert read_web_export(tmp_path / "out.web.json").standardize
    assert main(["export", str(ckpt)]) == 0 and (tmp_path / "net.web.json").is_file()


def test_cli_export_failures_are_one_line_errors(tmp_path, capsys):
    assert main(["export", str(tmp_path / "absent.npz")]) == 1
    assert "error:" in capsys.readouterr().err
    not_npz = tmp_path / "x.npz"
    not_npz.write_text("hello")
    assert main(["export", str(not_npz)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    mlp = lc.save_checkpoint(tmp_path / "mlp.npz", lc.mlp())
    assert main(["export", str(mlp)]) == 1
    err = capsys.readouterr().err
    assert "LeNet-5 only" in err and "Traceback" not in err
    ckpt = lc.save_checkpoint(tmp_path / "net.npz", lc.lenet5("classic", seed=0))
    assert main(["export", str(ckpt), str(tmp_path / "no" / "dir.json")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_the_text_can_sit_inside_an_html_script_element():
    text = to_web_json(lc.lenet5("classic", seed=0), standardize=False, description="</script><!-- x < y")
    assert "<" not in text
    assert read_web_export(text).description == "</script><!-- x < y"
