"""Checkpoints: round trips, no pickle, atomic saves, helpful errors, bit-exact resume."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

import lenet_core as lc
from lenet_core import checkpoint as ck
from lenet_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lenet_core.training import History, fit


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 32, 32), dtype=np.float32), rng.integers(0, 10, n)


def _trained(optimizer="adam", dropout=0.2, epochs=1):
    x, y = _data()
    model = lc.lenet5("modern", seed=0, dropout=dropout)
    opt = lc.make_optimizer(optimizer, model, 1e-3 if optimizer == "adam" else 0.01)
    hist = fit(model, opt, x, y, epochs, batch_size=16, progress=False)
    return model, opt, hist


def _params_equal(a, b):
    pa, pb = a.named_params(), b.named_params()
    return pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_round_trip(tmp_path):
    model, opt, hist = _trained()
    path = save_checkpoint(tmp_path / "m.npz", model, opt, epoch=1, history=hist, extra={"note": "hi", "n": [1, 2]})
    ckpt = load_checkpoint(path)
    assert ckpt.epoch == 1 and ckpt.extra == {"note": "hi", "n": [1, 2]}
    assert ckpt.format_version == ck.FORMAT_VERSION and ckpt.lenet_core_version == lc.__version__
    assert isinstance(ckpt.history, History) and ckpt.history == hist
    m = ckpt.model
    assert m.name == "lenet5-modern" and m.input_shape == (1, 1, 32, 32) and m.get_config() == model.get_config()
    assert _params_equal(m, model) and m.dtype == np.float32
    opt2 = ckpt.make_optimizer()
    assert type(opt2) is type(opt) and opt2.steps == opt.steps and opt2.hyperparameters() == opt.hyperparameters()
    assert opt2.model is m
    for name, bufs in opt.state_dict()["state"].items():
        for k, v in bufs.items():
            assert np.array_equal(opt2.state[name][k], v)
    # dropout streams continue where they were
    assert m.layers[9].rng.random() == model.layers[9].rng.random()


def test_model_only_and_float64(tmp_path):
    model = lc.lenet5("classic", seed=3, dtype=np.float64)
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "w.npz", model))
    assert ckpt.model.dtype == np.float64 and _params_equal(ckpt.model, model)
    assert ckpt.optimizer_state is None and ckpt.history is None and ckpt.epoch == 0
    with pytest.raises(ValueError, match="no optimizer state"):
        ckpt.make_optimizer()


def test_file_has_no_pickle_and_json_metadata(tmp_path):
    model, opt, hist = _trained()
    path = save_checkpoint(tmp_path / "m.npz", model, opt, epoch=1, history=hist)
    with np.load(path, allow_pickle=False) as z:  # would raise if anything needed pickle
        meta = json.loads(z[ck.META_KEY].tobytes().decode())
        assert all(z[k].dtype != object for k in z.files)
        assert "model/0.W" in z.files and "optim/0.W/m" in z.files
    assert meta["format"] == ck.FORMAT_NAME and meta["optimizer"]["type"] == "Adam"
    assert meta["model"]["config"][0] == {"type": "Conv2D", "in_channels": 1, "out_channels": 6, "kernel_size": 5,
                                          "stride": 1, "padding": 0}


def test_extra_must_be_json(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "m.npz", lc.lenet5(seed=0), extra={"f": object()})
    assert not list(tmp_path.iterdir())


def test_load_into_given_model(tmp_path):
    model = lc.lenet5("modern", seed=0)
    path = save_checkpoint(tmp_path / "m.npz", model)
    target = lc.lenet5("modern", seed=1)
    assert load_checkpoint(path, model=target).model is target and _params_equal(target, model)
    other = lc.lenet5("classic", seed=1)
    before = other.state_dict()
    with pytest.raises(CheckpointError, match="different architecture"):
        load_checkpoint(path, model=other)
    assert all(np.array_equal(before[k], v) for k, v in other.named_params().items())


# -- atomic saving ----------------------------------------------------------


def test_failed_replace_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    save_checkpoint(path, lc.lenet5(seed=0), epoch=1)
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ck.os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, lc.lenet5(seed=1), epoch=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left behind
    monkeypatch.undo()
    assert load_checkpoint(path).epoch == 1


def test_failure_while_writing_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    save_checkpoint(path, lc.lenet5(seed=0), epoch=1)
    before = path.read_bytes()

    def half_write(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.np, "savez", half_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, lc.lenet5(seed=1), epoch=2)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_checkpoint(tmp_path / "nope" / "m.npz", lc.lenet5(seed=0))


# -- bad files --------------------------------------------------------------


def _rewrite(src, dst, change):
    """Copy the npz at src to dst with ``change(dict of arrays)`` applied."""
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(dst, "wb") as f:
        np.savez(f, **arrays)
    return dst


def _meta_change(fn):
    def change(arrays):
        meta = json.loads(arrays[ck.META_KEY].tobytes().decode())
        fn(meta)
        arrays[ck.META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return change


@pytest.fixture
def good(tmp_path):
    model, opt, hist = _trained(dropout=0.0)
    return save_checkpoint(tmp_path / "good.npz", model, opt, epoch=1, history=hist)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.npz")
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(tmp_path)


def test_not_an_npz(tmp_path):
    p = tmp_path / "x.npz"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(CheckpointError, match="not a .npz"):
        load_checkpoint(p)


def test_truncated_file(good, tmp_path):
    data = good.read_bytes()
    p = tmp_path / "trunc.npz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(p)


def test_corrupted_member(good, tmp_path):
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("model/6.W.npy")
    pos = info.header_offset + 30 + len(info.filename) + 200  # inside the array data
    data[pos:pos + 8] = b"\xff" * 8
    p = tmp_path / "bad.npz"
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted|truncated"):
        load_checkpoint(p)


def test_foreign_npz(tmp_path):
    p = tmp_path / "weights.npz"
    np.savez(p, W=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a lenet_core checkpoint"):
        load_checkpoint(p)


def test_pickled_npz_is_refused_without_running_it(tmp_path):
    p = tmp_path / "evil.npz"
    np.savez(p, **{ck.META_KEY: np.array([{"a": 1}], dtype=object)})
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(p)


def test_newer_format_version(good, tmp_path):
    p = _rewrite(good, tmp_path / "new.npz", _meta_change(lambda m: m.update(format_version=99)))
    with pytest.raises(CheckpointError, match="version 99.*Upgrade"):
        load_checkpoint(p)


def test_damaged_metadata(good, tmp_path):
    def change(arrays):
        arrays[ck.META_KEY] = np.frombuffer(b"{not json", dtype=np.uint8)
    with pytest.raises(CheckpointError, match="metadata is damaged"):
        load_checkpoint(_rewrite(good, tmp_path / "d.npz", change))


def test_missing_arrays(good, tmp_path):
    p = _rewrite(good, tmp_path / "m1.npz", lambda a: a.pop("model/9.b"))
    with pytest.raises(CheckpointError, match="missing parameter arrays: 9.b"):
        load_checkpoint(p)
    p = _rewrite(good, tmp_path / "m2.npz", lambda a: a.pop("optim/0.W/v"))
    with pytest.raises(CheckpointError, match="missing optimizer arrays: optim/0.W/v"):
        load_checkpoint(p)


def test_architecture_and_shape_mismatch(good, tmp_path):
    def wrong_shape(arrays):
        arrays["model/9.W"] = np.zeros((84, 7), dtype=np.float32)
    with pytest.raises(CheckpointError, match="wrong shapes: 9.W"):
        load_checkpoint(_rewrite(good, tmp_path / "s.npz", wrong_shape))

    def bigger(meta):
        meta["model"]["config"][0]["out_channels"] = 8
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(_rewrite(good, tmp_path / "a.npz", _meta_change(bigger)))

    def unknown(meta):
        meta["model"]["config"][1]["type"] = "Swish"
    with pytest.raises(CheckpointError, match="cannot be rebuilt.*Swish"):
        load_checkpoint(_rewrite(good, tmp_path / "u.npz", _meta_change(unknown)))


def test_optimizer_of_other_type_is_refused(good):
    ckpt = load_checkpoint(good)
    with pytest.raises(ValueError, match="Adam"):
        ckpt.restore_optimizer(lc.SGD(ckpt.model, 0.1))


# -- exact resume -----------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_resume_is_bit_exact(tmp_path, optimizer):
    x, y = _data(40)
    xv, yv = _data(16, seed=1)
    lr = 1e-3 if optimizer == "adam" else 0.02

    def fresh():
        model = lc.lenet5("modern", seed=0, dropout=0.25)
        return model, lc.make_optimizer(optimizer, model, lr)

    kw = dict(batch_size=16, x_val=xv, y_val=yv, seed=7, progress=False)
    straight, opt = fresh()
    h_straight = fit(straight, opt, x, y, 4, **kw)

    first, opt1 = fresh()
    h1 = fit(first, opt1, x, y, 2, **kw)
    save_checkpoint(tmp_path / "half.npz", first, opt1, epoch=2, history=h1)
    ckpt = load_checkpoint(tmp_path / "half.npz")
    resumed = ckpt.model
    h2 = fit(resumed, ckpt.make_optimizer(), x, y, 4, start_epoch=ckpt.epoch, history=ckpt.history, **kw)

    assert _params_equal(resumed, straight)
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch"):
        assert h2[key] == h_straight[key], key


def test_resume_with_fit_checkpoint_option(tmp_path):
    x, y = _data(40)
    path = tmp_path / "run.npz"

    def fresh():
        model = lc.lenet5("classic", seed=0, dropout=0.25)
        return model, lc.make_optimizer("nesterov", model, 0.05)

    straight, opt = fresh()
    h_straight = fit(straight, opt, x, y, 3, batch_size=16, seed=3, progress=False)

    first, opt1 = fresh()
    fit(first, opt1, x, y, 1, batch_size=16, seed=3, progress=False, checkpoint_path=path)
    ckpt = load_checkpoint(path)
    assert ckpt.epoch == 1 and ckpt.extra == {"fit": {"seed": 3, "batch_size": 16}}
    fit(ckpt.model, ckpt.make_optimizer(), x, y, 3, batch_size=16, seed=3, progress=False, start_epoch=1,
        history=ckpt.history, checkpoint_path=path)
    final = load_checkpoint(path)
    assert final.epoch == 3
    assert _params_equal(final.model, straight)
    assert final.history["train_loss"] == h_straight["train_loss"]
    assert os.listdir(tmp_path) == ["run.npz"]
