"""The command line (``python -m lenet_core``) and the digit-image preprocessing behind ``predict``.

Training here uses a few hundred MNIST images from the offline 10k root, so the
whole file runs in seconds; the real 10-epoch runs are in benchmarks/.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from lenet_core.checkpoint import load_checkpoint
from lenet_core.cli import format_confusion_matrix, main
from lenet_core.mnist import load_mnist
from lenet_core.preprocess import prepare_lenet_input, standardize
from lenet_core.digits import preprocess_digit_image, to_mnist_28
from lenet_core.training import predict

LIMIT = "200"


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(mnist_10k_dir, tmp_path_factory):
    """A checkpoint from a one-epoch CLI run on 200 images, and the CLI's printed output."""
    path = tmp_path_factory.mktemp("cli") / "quick.npz"
    code = main(["train", "--variant", "modern", "--epochs", "1", "--batch-size", "32", "--limit", LIMIT,
                 "--data-dir", str(mnist_10k_dir), "--no-progress", "--output", str(path)])
    assert code == 0
    return path


@pytest.fixture(scope="module")
def test_digits(mnist_10k_dir):
    return load_mnist("test", root=mnist_10k_dir, download=False)


# -- help and usage errors --------------------------------------------------


def test_module_help_runs_as_a_program():
    proc = subprocess.run([sys.executable, "-m", "lenet_core", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for cmd in ("train", "evaluate", "summary", "predict"):
        assert cmd in proc.stdout


@pytest.mark.parametrize("cmd", ["train", "evaluate", "summary", "predict"])
def test_each_command_has_help(cmd, capsys):
    code, out, _ = run([cmd, "--help"], capsys)
    assert code == 0 and f"usage: python -m lenet_core {cmd}" in out


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["train", "--epochs", "0"], ["train", "--variant", "huge"],
                                  ["train", "--lr", "-1"], ["train", "--batch-size", "many"], ["predict", "x.npz"],
                                  ["evaluate"]])
def test_usage_errors_exit_2(argv, capsys):
    code, _, err = run(argv, capsys)
    assert code == 2 and "usage:" in err and "Traceback" not in err


def test_summary(capsys):
    code, out, _ = run(["summary"], capsys)
    assert code == 0 and "lenet5-classic" in out and "Total parameters: 61,706" in out and "AvgPool2D" in out
    code, out, _ = run(["summary", "--variant", "modern"], capsys)
    assert code == 0 and "MaxPool2D" in out


# -- train / evaluate --------------------------------------------------------


def test_quick_train_saves_a_checkpoint(trained, capsys):
    ckpt = load_checkpoint(trained)
    assert ckpt.epoch == 1 and ckpt.model.name == "lenet5-modern"
    args = ckpt.extra["train_args"]
    assert args == {"variant": "modern", "batch_size": 32, "optimizer": "adam", "lr": 1e-3, "seed": 0,
                    "val_size": 0, "limit": 200, "schedule": "constant", "normalize": True}
    assert 0 <= ckpt.extra["test"]["accuracy"] <= 1 and ckpt.extra["test"]["images"] == 200
    assert ckpt.history["val_loss"] == [] and len(ckpt.history["train_loss"]) == 1
    code, out, _ = run(["summary", "--checkpoint", trained], capsys)
    assert code == 0 and "lenet5-modern" in out


def test_no_normalize_is_recorded(mnist_10k_dir, tmp_path, capsys):
    out_path = tmp_path / "raw.npz"
    code, _, err = run(["train", "--epochs", "1", "--limit", "64", "--no-normalize", "--no-progress",
                        "--data-dir", str(mnist_10k_dir), "--output", str(out_path)], capsys)
    assert code == 0, err
    assert load_checkpoint(out_path).extra["train_args"]["normalize"] is False


def test_train_prints_epochs_and_test_accuracy(mnist_10k_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LENET_DATA_DIR", str(mnist_10k_dir))  # found through the environment
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["train", "--epochs", "1", "--limit", "100", "--val-size", "20", "--no-progress",
                          "--batch-size", "50"], capsys)
    assert code == 0, err
    assert "on 80 images, 20 held out for validation" in out
    assert "epoch   1/1  loss" in out and "val_acc" in out
    assert "Test accuracy:" in out and "(100 images)" in out
    assert (tmp_path / "lenet5-classic.npz").is_file()  # the default output name


def test_resume_continues_exactly(trained, mnist_10k_dir, tmp_path, capsys):
    data = ["--data-dir", mnist_10k_dir, "--no-progress"]
    resumed = tmp_path / "resumed.npz"
    code, out, err = run(["train", "--resume", trained, "--epochs", "2", "--output", resumed] + data, capsys)
    assert code == 0, err
    assert "Resuming" in out and "epochs 2-2" in out
    straight = tmp_path / "straight.npz"
    code, _, err = run(["train", "--variant", "modern", "--epochs", "2", "--batch-size", "32", "--limit", LIMIT,
                        "--output", straight] + data, capsys)
    assert code == 0, err
    a, b = load_checkpoint(resumed), load_checkpoint(straight)
    assert a.epoch == b.epoch == 2
    for k, v in a.model.named_params().items():
        assert np.array_equal(v, b.model.named_params()[k]), k
    assert a.history["train_loss"] == b.history["train_loss"]
    assert a.extra["test"] == b.extra["test"]


def test_resume_refuses_changed_settings(trained, mnist_10k_dir, tmp_path, capsys):
    code, _, err = run(["train", "--resume", trained, "--batch-size", "64", "--data-dir", mnist_10k_dir,
                        "--output", tmp_path / "x.npz"], capsys)
    assert code == 2 and "--batch-size 64 (checkpoint: 32)" in err
    code, _, err = run(["train", "--resume", tmp_path / "missing.npz"], capsys)
    assert code == 1 and "does not exist" in err and "Traceback" not in err


def test_evaluate(trained, mnist_10k_dir, capsys, test_digits):
    code, out, err = run(["evaluate", trained, "--data-dir", mnist_10k_dir, "--limit", LIMIT], capsys)
    assert code == 0, err
    assert "Accuracy:" in out and "Loss:" in out and "Test images: 200" in out
    table = out[out.index("true\\pred"):].splitlines()
    rows = table[2:12]
    assert [int(r.split()[0]) for r in rows] == list(range(10))
    counts = np.array([[int(v) for v in r.split()[1:11]] for r in rows])
    assert counts.sum() == 200
    assert np.array_equal(counts.sum(1), np.bincount(test_digits[1][:200], minlength=10))
    ckpt = load_checkpoint(trained)
    x = standardize(prepare_lenet_input(test_digits[0][:200]))   # the CLI's default preprocessing
    acc = (predict(ckpt.model, x) == test_digits[1][:200]).mean()
    assert f"Accuracy: {100 * acc:.2f}%" in out


def test_format_confusion_matrix():
    cm = np.diag([3, 0, 12])
    text = format_confusion_matrix(cm)
    lines = text.splitlines()
    assert len(lines) == 5 and lines[2].split()[:4] == ["0", "3", "0", "0"] and lines[3].endswith("-")
    assert "100.00%" in lines[4]


# -- runtime errors: exit 1 with a message, no traceback ----------------------


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    code, _, err = run(["train", "--data-dir", tmp_path, "--no-download", "--limit", "10"], capsys)
    assert code == 1 and "not found" in err and "LENET_DATA_DIR" in err and "Traceback" not in err


def test_bad_checkpoints(tmp_path, mnist_10k_dir, capsys):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"hello")
    for path, expected in ((junk, "not a .npz"), (tmp_path / "absent.npz", "does not exist"), (tmp_path, "not a file")):
        code, _, err = run(["evaluate", path, "--data-dir", mnist_10k_dir], capsys)
        assert code == 1 and expected in err and "Traceback" not in err, err


def test_errors_in_a_real_process_have_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lenet_core", "evaluate", str(tmp_path / "nope.npz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


# -- predict -------------------------------------------------------------------


def test_predict_own_digits(trained, test_digits, tmp_path, capsys):
    images, labels = test_digits
    ckpt = load_checkpoint(trained)
    k = 0  # a 7
    expected = int(predict(ckpt.model, prepare_lenet_input(images[k:k + 1]))[0])
    plain = tmp_path / "digit.png"
    Image.fromarray(images[k]).save(plain)
    # the same digit as a reader might draw it: dark ink on light, colored paper, large, off-center
    big = Image.fromarray(255 - images[k]).resize((168, 168), Image.BICUBIC)
    canvas = np.full((240, 300, 3), (235, 228, 210), dtype=np.float64)
    canvas[20:188, 100:268] *= np.asarray(big, dtype=np.float64)[..., None] / 255
    drawn = tmp_path / "drawn.png"
    Image.fromarray(canvas.astype(np.uint8)).save(drawn)

    code, out, err = run(["predict", trained, plain, drawn], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    for line in lines:
        head, probs = line.split("  (")
        entries = probs.rstrip(")").split(", ")
        assert len(entries) == 3 and all(e.endswith("%") for e in entries)
        assert head.endswith(f": {entries[0].split(':')[0]}")
    assert lines[0] == f"{plain}: {expected}  ({lines[0].split('  (')[1]}"
    assert lines[1].startswith(f"{drawn}: {expected}  (")


def test_predict_bad_images(trained, tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (50, 50), "white").save(blank)
    good = tmp_path / "good.png"
    Image.fromarray(np.pad(np.full((10, 4), 255, np.uint8), 9)).save(good)
    code, out, err = run(["predict", trained, text, blank, tmp_path / "absent.png", good], capsys)
    assert code == 1 and "Traceback" not in err
    assert f"{text}: cannot read a digit" in err and "no digit found" in err and "absent.png: no such file" in err
    assert out.startswith(f"{good}: ")  # the good image is still read


# -- preprocessing of a reader's digit ----------------------------------------------


def test_preprocess_mnist_digit_is_nearly_unchanged(test_digits):
    images, _ = test_digits
    for img in images[:20]:
        x = preprocess_digit_image(img)
        assert x.shape == (1, 1, 32, 32) and x.dtype == np.float32
        assert 0 <= x.min() and x.max() <= 1 and x.max() > 0.9
        assert not x[0, 0, :2].any() and not x[0, 0, :, -2:].any()
        ref = prepare_lenet_input(img)
        assert np.corrcoef(x.ravel(), ref.ravel())[0, 1] > 0.95


def test_preprocess_normalizes_size_position_and_polarity():
    # a dark, thick "1"-like bar on light gray, 300x200, far from the center
    img = np.full((300, 200), 200, np.uint8)
    img[20:140, 20:50] = 30
    d = to_mnist_28(img)
    rows, cols = np.flatnonzero(d.any(1) > 0), np.flatnonzero(d.any(0) > 0)
    assert rows[-1] - rows[0] + 1 == 20 and cols[-1] - cols[0] + 1 in (5, 6)  # longer side 20 px
    ii, jj = np.mgrid[:28, :28]
    assert abs((d * ii).sum() / d.sum() - 14) <= 0.5 and abs((d * jj).sum() / d.sum() - 14) <= 0.5
    assert d.max() == pytest.approx(1, abs=0.02) and d[0, 0] == 0
    # the same digit white-on-black, as RGB floats in [0, 1] or as a PIL image: same result
    inv = (255 - img.astype(np.float64)) / 255
    np.testing.assert_allclose(to_mnist_28(np.stack([inv] * 3, -1)), d, atol=0.02)
    np.testing.assert_allclose(to_mnist_28(Image.fromarray(img)), d, atol=1e-6)


def test_preprocess_transparent_png(tmp_path):
    rgba = np.zeros((64, 64, 4), np.uint8)  # black strokes on a fully transparent background
    rgba[10:50, 30:36, 3] = 255
    p = tmp_path / "t.png"
    Image.fromarray(rgba).save(p)
    x = preprocess_digit_image(p)
    assert x.shape == (1, 1, 32, 32) and x.max() > 0.9 and x[0, 0, 0, 0] == 0


def test_preprocess_rejects_blank_and_odd_inputs():
    with pytest.raises(ValueError, match="no digit"):
        preprocess_digit_image(np.full((40, 40), 255, np.uint8))
    with pytest.raises(ValueError):
        preprocess_digit_image(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="too small"):
        preprocess_digit_image(np.zeros((1, 5)))


# -- nothing lost, nothing confusing (issue 16) ---------------------------------------


def _small_train(mnist_10k_dir, out, *extra):
    return ["train", "--epochs", "1", "--limit", "64", "--batch-size", "32", "--data-dir", mnist_10k_dir,
            "--output", out, *extra]


def test_train_refuses_to_replace_an_existing_file(trained, mnist_10k_dir, tmp_path, capsys):
    """Item 2: -o FILE used to replace FILE silently (and make it 0600)."""
    path = tmp_path / "precious.npz"
    path.write_bytes(trained.read_bytes())
    path.chmod(0o644)
    before = path.read_bytes()
    code, out, err = run(_small_train(mnist_10k_dir, path), capsys)
    assert code == 2 and "already exists" in err and "--force" in err and "Training" not in out
    assert path.read_bytes() == before
    code, out, err = run(_small_train(mnist_10k_dir, path, "--force"), capsys)
    assert code == 0, err
    assert path.read_bytes() != before and path.stat().st_mode & 0o777 == 0o644   # replaced, mode kept


def test_resume_may_replace_only_the_resumed_file(trained, mnist_10k_dir, tmp_path, capsys):
    mine = tmp_path / "run.npz"
    mine.write_bytes(trained.read_bytes())
    other = tmp_path / "other.npz"
    other.write_bytes(trained.read_bytes())
    data = ["--data-dir", mnist_10k_dir, "--no-progress"]
    code, _, err = run(["train", "--resume", mine, "--epochs", "2", "--output", other] + data, capsys)
    assert code == 2 and f"{other} already exists" in err
    code, out, err = run(["train", "--resume", mine, "--epochs", "2"] + data, capsys)   # in place
    assert code == 0, err
    assert load_checkpoint(mine).epoch == 2 and load_checkpoint(other).epoch == 1


def test_a_run_that_blows_up_fails_and_keeps_nothing(mnist_10k_dir, tmp_path, capsys):
    """Item 3: --lr 100 (loss in the thousands, never NaN) used to exit 0 and keep its checkpoint."""
    path = tmp_path / "boom.npz"
    code, out, err = run(["train", "--lr", "100", "--limit", "2000", "--epochs", "2", "--no-progress",
                          "--data-dir", mnist_10k_dir, "--output", path], capsys)
    assert code == 1 and "Traceback" not in err
    assert err.startswith("error: training diverged") and "e.g. --lr 0.01." in err
    assert "No checkpoint was written." in err and not path.exists()


def test_predict_refuses_a_decompression_bomb_and_reads_the_rest(trained, tmp_path, capsys):
    """Item 4: a bomb used to print a traceback and skip the files after it."""
    from test_digits import _png
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png(30_000, 30_000, bytes(30_001)))
    good = tmp_path / "good.png"
    Image.fromarray(np.pad(np.full((10, 4), 255, np.uint8), 9)).save(good)
    code, out, err = run(["predict", trained, bomb, good], capsys)
    assert code == 1 and "Traceback" not in err
    assert f"{bomb}: refused" in err and "1 of 2 images could not be read" in err
    assert out.startswith(f"{good}: ")


def _refuse_writes_in(monkeypatch, directory):
    """As if ``directory`` were read-only (the tests run as root, who may write anywhere)."""
    from pathlib import Path
    real_open = os.open

    def guarded(path, flags, *args, **kwargs):
        if Path(path).parent == directory and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)


def test_unwritable_output_directory_is_found_before_any_work(mnist_10k_dir, tmp_path, capsys, monkeypatch):
    """Item 6: it used to be found only when the first epoch's checkpoint was saved."""
    locked = tmp_path / "locked"
    locked.mkdir()
    _refuse_writes_in(monkeypatch, locked)
    code, out, err = run(_small_train(mnist_10k_dir, locked / "m.npz", "--no-progress"), capsys)
    assert code == 1 and "Training" not in out and "epoch" not in out
    assert f"cannot write the checkpoint into {locked}: permission denied" in err and "--output" in err


def test_read_only_data_directory_is_found_before_any_work(tmp_path, capsys, monkeypatch):
    """Item 6: a read-only cache used to give a bare errno from inside the download."""
    cache = tmp_path / "cache"
    cache.mkdir()
    _refuse_writes_in(monkeypatch, cache)
    monkeypatch.setenv("LENET_MNIST_MIRRORS", "http://127.0.0.1:9/")
    code, out, err = run(["train", "--data-dir", cache, "--limit", "10", "-o", tmp_path / "m.npz"], capsys)
    assert code == 1 and "Errno" not in err and "Traceback" not in err
    assert f"Cannot download MNIST into {cache}: permission denied" in err and "--data-dir" in err


def test_every_missing_file_is_named_at_once_in_the_command_lines_terms(tmp_path, capsys):
    """First hour: the error listed two files, and a second run found two more; it named API arguments."""
    code, _, err = run(["train", "--data-dir", tmp_path, "--no-download", "--limit", "10",
                        "-o", tmp_path / "m.npz"], capsys)
    assert code == 1
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        assert name in err
    assert "--data-dir" in err and "--no-download" in err and "`root`" not in err and "download=True" not in err


def test_ctrl_c_during_a_download_talks_about_the_download(tmp_path, capsys, monkeypatch):
    """Item 7: it used to say that 'the checkpoint of the last completed epoch is intact'."""
    def interrupted(url, dest, *args, **kwargs):
        dest.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr("lenet_core.download._fetch_once", interrupted)
    code, _, err = run(["train", "--data-dir", tmp_path / "cache", "-o", tmp_path / "m.npz"], capsys)
    assert code == 130 and "downloading MNIST" in err and "checkpoint" not in err
    assert not [p for p in (tmp_path / "cache").iterdir()]   # no partial file under any name


def test_resuming_a_finished_run_trains_and_writes_nothing(trained, tmp_path, capsys):
    """Item 7: it used to announce 'epochs 2-1' and write the file again."""
    path = tmp_path / "done.npz"
    path.write_bytes(trained.read_bytes())
    before = path.stat().st_mtime_ns, path.read_bytes()
    code, out, err = run(["train", "--resume", path, "--epochs", "1"], capsys)
    assert code == 0, err
    assert "nothing to train" in out and "--epochs 2 or more" in out and "epochs 2-1" not in out
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before


def test_one_line_per_epoch_when_not_in_a_terminal(mnist_10k_dir, tmp_path, capsys):
    """First hour: without --no-progress, a log or pipe got carriage-return bars and no epoch lines."""
    code, out, err = run(_small_train(mnist_10k_dir, tmp_path / "m.npz"), capsys)
    assert code == 0, err
    assert "epoch   1/1  loss" in out and "\r" not in out + err


def test_summary_takes_its_checkpoint_like_the_other_commands(trained, capsys):
    code, out, _ = run(["summary", trained], capsys)
    assert code == 0 and "lenet5-modern" in out and "MaxPool2D" in out
    code, _, err = run(["summary", trained, "--variant", "classic"], capsys)
    assert code == 2 and "not both" in err


@pytest.mark.parametrize("change, expected", [({"batch_size": "32"}, "malformed (batch_size)"),
                                              ({"tempo": 3}, "malformed (tempo)"),
                                              ({"variant": "classic"}, "variant 'classic' but it holds lenet5-modern")])
def test_resume_refuses_malformed_training_settings(trained, tmp_path, capsys, change, expected):
    """Item 5: settings of the wrong type in a checkpoint used to surface as tracebacks mid-run."""
    from lenet_core.checkpoint import save_checkpoint
    ckpt = load_checkpoint(trained)
    path = tmp_path / "odd.npz"
    args = {**ckpt.extra["train_args"], **change}
    save_checkpoint(path, ckpt.model, ckpt.make_optimizer(), epoch=ckpt.epoch, history=ckpt.history,
                    extra={**ckpt.extra, "train_args": args})
    code, _, err = run(["train", "--resume", path, "--epochs", "2"], capsys)
    assert code == 1 and expected in err and "Traceback" not in err
