"""Checkpoints: round trips, no pickle, atomic saves, helpful errors, bit-exact resume."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

import lenet_core as lc
from lenet_core import checkpoint as ck
from lenet_core import files
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

    monkeypatch.setattr(files.os, "replace", boom)
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
    with pytest.raises(CheckpointError, match=r"do not fit the stored architecture: wrong shapes: 0.W: expected "
                                              r"\(8, 1, 5, 5\), got \(6, 1, 5, 5\)"):
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


# -- hostile files: refused before anything is decompressed, every problem a CheckpointError ---------


def _npy_member(shape, dtype="<f4"):
    """The header of an .npy entry for ``shape`` (what np.save writes before the data)."""
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def _with_member(src, dst, name, header, nbytes):
    """Copy the checkpoint at src to dst, adding (or replacing) entry ``name`` with ``header`` and
    ``nbytes`` zero bytes of data, deflated (a few hundred KB on disk for hundreds of MB inside)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename != name + ".npy":
                zout.writestr(info, zin.read(info))
        info = zipfile.ZipInfo(name + ".npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zout.open(info, "w", force_zip64=True) as f:
            f.write(header)
            chunk = bytes(1 << 20)
            for _ in range(nbytes >> 20):
                f.write(chunk)
    return dst


def _peak_bytes(fn):
    import tracemalloc
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


BOMB = 256 << 20   # bytes inside a crafted entry; the file on disk stays small


@pytest.mark.parametrize("entry", ["model/6.W", "junk"])
def test_a_small_file_that_expands_to_hundreds_of_megabytes_is_refused_unread(good, tmp_path, entry):
    """Item 1: an entry whose header declares far more than the metadata promises (or that the
    metadata does not name at all) is refused from the zip directory and the .npy header alone."""
    header = _npy_member((BOMB // 4,))
    bomb = _with_member(good, tmp_path / "bomb.npz", entry, header, BOMB)
    assert bomb.stat().st_size < BOMB // 100
    errors = []

    def load():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(bomb)
        errors.append(str(info.value))

    assert _peak_bytes(load) < 16 << 20
    assert entry in errors[0] and ("refusing to decompress" in errors[0] or "does not describe" in errors[0])


def test_declared_array_total_is_bounded(good, tmp_path):
    """A stored architecture that honestly declares gigabytes is refused before it is built."""
    def huge(meta):
        meta["model"]["config"][9]["in_features"] = 1 << 20
        meta["model"]["config"][9]["out_features"] = 1 << 12
    p = _rewrite(good, tmp_path / "huge.npz", _meta_change(huge))
    assert _peak_bytes(lambda: pytest.raises(CheckpointError, load_checkpoint, p)) < 16 << 20
    with pytest.raises(CheckpointError, match="more than the limit"):
        load_checkpoint(p, max_bytes=1 << 20)


def test_truncated_file_says_truncated(good, tmp_path):
    """Item 5: a file cut short is 'truncated', not 'not a zip'."""
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        p = tmp_path / f"cut{cut}.npz"
        p.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="is truncated") as info:
            load_checkpoint(p)
        assert "not a zip" not in str(info.value)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(empty)


def _set(path, value):
    """A metadata change: set the entry at ``path`` (keys and indices) to ``value``."""
    def change(meta):
        node = meta
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


def _drop(path):
    def change(meta):
        node = meta
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return change


MALFORMED = {
    "epoch as text": (_set(["epoch"], "1"), "'epoch'"),
    "negative epoch": (_set(["epoch"], -1), "'epoch'"),
    "fractional epoch": (_set(["epoch"], 1.5), "'epoch'"),
    "epoch missing": (_drop(["epoch"]), "no 'epoch'"),
    "model missing": (_drop(["model"]), "no 'model'"),
    "model not a dict": (_set(["model"], [1, 2]), "'model' entry is not a dict"),
    "name missing": (_drop(["model", "name"]), "no 'name'"),
    "name not text": (_set(["model", "name"], 7), "model name"),
    "config missing": (_drop(["model", "config"]), "no 'config'"),
    "config not a list": (_set(["model", "config"], "lenet"), "architecture"),
    "layer without type": (_set(["model", "config", 0], {"in_channels": 1}), "architecture"),
    "channels as text": (_set(["model", "config", 0, "out_channels"], "6"), "out_channels '6'"),
    "channels as bool": (_set(["model", "config", 0, "in_channels"], True), "in_channels True"),
    "object dtype": (_set(["model", "dtype"], "object"), "model dtype is 'object'"),
    "dtype missing": (_drop(["model", "dtype"]), "no 'dtype'"),
    "input shape text": (_set(["model", "input_shape"], "1x32x32"), "input shape"),
    "dropout state of a conv": (_set(["model", "dropout_rng"], {"0": {}}), "not a Dropout layer"),
    "dropout layer '\u00b2'": (_set(["model", "dropout_rng"], {"\u00b2": {}}), "not a Dropout layer"),
    "history not a dict": (_set(["history"], [1, 2]), "'history'"),
    "history of text": (_set(["history", "train_loss"], ["low"]), "history entry 'train_loss'"),
    "history lengths": (_set(["history", "lr"], [0.1, 0.1, 0.1]), "different lengths"),
    "extra not a dict": (_set(["extra"], "x"), "'extra'"),
    "unknown optimizer": (_set(["optimizer", "type"], "RMSprop"), "optimizer type is 'RMSprop'"),
    "steps as text": (_set(["optimizer", "steps"], "2"), "step count"),
    "lr as text": (_set(["optimizer", "hyper", "lr"], "fast"), "numeric 'lr'"),
    "infinite lr": (_set(["optimizer", "hyper", "lr"], float("inf")), "not a finite number"),
    "negative lr": (_set(["optimizer", "hyper", "lr"], -1.0), "optimizer cannot be rebuilt"),
    "unknown hyperparameter": (_set(["optimizer", "hyper", "warp"], 9), "optimizer cannot be rebuilt"),
    "buffer of no parameter": (_set(["optimizer", "buffers", "99.W"], ["m", "v"]), "not a parameter"),
    "wrong buffer names": (_set(["optimizer", "buffers", "0.W"], ["velocity"]), "expected \\['m', 'v'\\]"),
    "classic named, modern built": (_set(["model", "name"], "lenet5-classic"), "not LeNet-5 classic"),
    "wrong input shape for lenet5": (_set(["model", "input_shape"], [1, 1, 28, 28]), "input shape"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_metadata_is_a_checkpoint_error_naming_the_problem(good, tmp_path, case):
    """Item 5: wrong types, missing keys, values that do not fit: a CheckpointError that names the
    field, never a TypeError, KeyError or AttributeError, and never a silently accepted file."""
    change, expected = MALFORMED[case]
    p = _rewrite(good, tmp_path / "bad.npz", _meta_change(change))
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(p)


@pytest.mark.parametrize("entry", ["model/0.W", "model/11.b", "optim/6.W/m"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_arrays_are_refused(good, tmp_path, entry, value):
    def poison(arrays):
        arrays[entry] = arrays[entry].copy()
        arrays[entry].flat[3] = value
    with pytest.raises(CheckpointError, match=f"{entry.split('/', 1)[1]} holds NaN or infinite values"):
        load_checkpoint(_rewrite(good, tmp_path / "nan.npz", poison))


def test_array_of_other_dtype_is_refused(good, tmp_path):
    def as_int(arrays):
        arrays["model/3.b"] = arrays["model/3.b"].astype(np.int32)
    with pytest.raises(CheckpointError, match="'model/3.b' holds int32, expected float32"):
        load_checkpoint(_rewrite(good, tmp_path / "int.npz", as_int))


def test_a_refused_file_leaves_the_given_model_unchanged(good, tmp_path):
    def poison(arrays):
        arrays["model/11.b"] = np.full_like(arrays["model/11.b"], np.nan)
    p = _rewrite(good, tmp_path / "nan.npz", poison)
    target = lc.lenet5("modern", seed=5)
    before = target.state_dict()
    with pytest.raises(CheckpointError):
        load_checkpoint(p, model=target)
    assert all(np.array_equal(before[k], v) for k, v in target.named_params().items())


# -- saving: permissions, leftovers -------------------------------------------


def test_replacing_a_checkpoint_keeps_its_permissions(tmp_path):
    path = tmp_path / "m.npz"
    save_checkpoint(path, lc.lenet5(seed=0))
    path.chmod(0o644)
    save_checkpoint(path, lc.lenet5(seed=1), epoch=2)
    assert path.stat().st_mode & 0o777 == 0o644 and load_checkpoint(path).epoch == 2
    new = tmp_path / "new.npz"
    save_checkpoint(new, lc.lenet5(seed=0))
    umask = os.umask(0)
    os.umask(umask)
    assert new.stat().st_mode & 0o777 == 0o666 & ~umask


def test_leftovers_of_killed_saves_are_cleaned_up_and_nothing_else(tmp_path):
    """Item 7: a SIGKILL mid-save leaves a temporary file; the next save of that checkpoint deletes
    ours (dead writer, older than this process) and leaves everything else alone."""
    path = tmp_path / "m.npz"
    old = files.STARTED - 3600
    dead = subprocess_pid_that_exited()
    ours = [tmp_path / f".m.npz.{dead}.0123abcd.tmp", tmp_path / ".m.npz.x1y2_z3w.tmp"]   # new and legacy names
    others = [tmp_path / f".m.npz.{os.getpid()}.89abcdef.tmp",   # a live writer (this very process)
              tmp_path / ".other.npz.k3j4h5g6.tmp", tmp_path / "m.npz.tmp", tmp_path / "notes.tmp"]
    for p in ours + others:
        p.write_bytes(b"partial")
        os.utime(p, (old, old))
    fresh = tmp_path / f".m.npz.{dead}.fedcba98.tmp"   # modified after this process started: not judged
    fresh.write_bytes(b"partial")
    save_checkpoint(path, lc.lenet5(seed=0))
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in others + [fresh])


def subprocess_pid_that_exited() -> int:
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)
