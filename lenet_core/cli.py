"""Command line: ``python -m lenet_core {train,evaluate,summary,predict,export}`` (also installed as ``lenet``).

Exit codes: 0 success, 1 a runtime failure (missing data, unreadable checkpoint or
image, diverged training), 2 a usage error (bad arguments, or an output file that
exists), 130 interrupted (Ctrl-C). Expected failures print one ``error: ...``
message saying what to do, never a traceback. Everything that can be checked
before the work starts is checked first: that the data is there (or can be
downloaded into a writable directory), that the checkpoint can be written, that
an existing file is not replaced by accident. Progress bars appear only in a
terminal; otherwise (a log, a pipe, ``--no-progress``) training prints one line per epoch.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from ._version import __version__
from .batches import train_val_split
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .digits import DigitImageError, preprocess_digit_image
from .download import MNISTDownloadError
from .files import temp_name
from .idx import IDXFormatError
from .mnist import default_root, ensure_mnist, load_mnist
from .models import lenet5
from .optim import make_optimizer
from .preprocess import prepare_lenet_input, standardize
from .progress import interactive
from .schedules import make_schedule
from .training import TrainingDiverged, confusion_matrix, evaluate, fit, predict, predict_proba
from .webexport import WebExportError, export_checkpoint

__all__ = ["main", "build_parser", "format_confusion_matrix"]

DEFAULTS = {"variant": "classic", "epochs": 10, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "seed": 0,
            "val_size": 0, "limit": None, "schedule": "constant", "normalize": True}
# settings that decide the training trajectory: fixed by the checkpoint when resuming
RESUME_FIXED = ("variant", "batch_size", "optimizer", "seed", "val_size", "limit", "schedule", "normalize")
# what the train_args a checkpoint stores must look like to be resumed
_TRAIN_ARG_OK = {
    "variant": lambda v: v in ("classic", "modern"),
    "batch_size": lambda v: type(v) is int and v >= 1,
    "optimizer": lambda v: v in ("sgd", "momentum", "nesterov", "adam"),
    "lr": lambda v: type(v) in (int, float) and 0 < v < float("inf"),
    "seed": lambda v: type(v) is int,
    "val_size": lambda v: type(v) is int and v >= 0,
    "limit": lambda v: v is None or (type(v) is int and v >= 1),
    "schedule": lambda v: v in ("constant", "step", "exponential", "cosine"),
    "normalize": lambda v: type(v) is bool,
}
POINT_AT = "--data-dir (or the LENET_DATA_DIR environment variable)"


class UsageError(Exception):
    """Bad combination of arguments: exit code 2."""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _nonneg_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(
        prog="python -m lenet_core",
        description="LeNet-5 from scratch in NumPy: train on MNIST, evaluate checkpoints, read your own digits.",
        epilog="Run 'python -m lenet_core COMMAND --help' for the options of each command. "
               "MNIST is read from --data-dir, else $LENET_DATA_DIR, else the user cache (downloaded if missing).")
    parser.add_argument("--version", action="version", version=f"lenet_core {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def data_args(p):
        p.add_argument("--data-dir", metavar="DIR",
                       help="directory with the MNIST IDX files (default: $LENET_DATA_DIR or the user cache)")
        p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")

    t = sub.add_parser("train", help="train LeNet-5 on MNIST and save a checkpoint",
                       description="Train LeNet-5 on MNIST, save a checkpoint after every epoch and report the\n"
                                   "test accuracy. The defaults are the reference recipe: Adam, lr 1e-3, batch 64,\n"
                                   "10 epochs, all training images, inputs standardized with MNIST's mean and std,\n"
                                   "no validation split.",
                       epilog="Examples:\n  python -m lenet_core train --variant modern --epochs 10\n"
                              "  python -m lenet_core train --limit 2000 --epochs 1   # a quick run\n"
                              "  python -m lenet_core train --resume lenet5-classic.npz --epochs 15",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--variant", choices=["classic", "modern"],
                   help="classic: tanh + average pooling (1998); modern: ReLU + max pooling (default classic)")
    t.add_argument("--epochs", type=_positive_int, default=DEFAULTS["epochs"],
                   help="total number of epochs; with --resume, train until this many are done (default 10)")
    t.add_argument("--batch-size", type=_positive_int, help="images per step (default 64)")
    t.add_argument("--optimizer", choices=["sgd", "momentum", "nesterov", "adam"], help="default adam")
    t.add_argument("--lr", type=_positive_float, help="learning rate (default 1e-3)")
    t.add_argument("--schedule", choices=["constant", "step", "exponential", "cosine"],
                   help="learning-rate schedule over epochs (default constant)")
    t.add_argument("--no-normalize", dest="normalize", action="store_false", default=None,
                   help="feed pixels scaled to [0, 1] instead of standardized with the MNIST mean and std")
    t.add_argument("--seed", type=int, help="seed for the initial weights, the shuffling and the split (default 0)")
    data_args(t)
    t.add_argument("--val-size", type=_nonneg_int,
                   help="hold out this many training images for validation after each epoch (default 0: none)")
    t.add_argument("--limit", type=_positive_int, metavar="N",
                   help="use only the first N training and N test images (a quick run)")
    t.add_argument("--output", "-o", metavar="CHECKPOINT",
                   help="where to save (default lenet5-<variant>.npz; with --resume, the resumed file); an "
                        "existing file is never replaced unless you pass --force or resume that very file")
    t.add_argument("--force", action="store_true", help="replace an existing --output file")
    t.add_argument("--resume", metavar="CHECKPOINT", help="continue training from this checkpoint")
    t.add_argument("--no-progress", action="store_true",
                   help="no progress bars; print one line per epoch (the default when the output is not a terminal)")
    t.add_argument("--processes", type=_positive_int, metavar="P",
                   help="split every batch over P processes, one per core (default: as many as NumPy's BLAS "
                        "has threads, or $LENET_PROCESSES; results differ between values only by float "
                        "rounding, so resume with the same value to continue bit for bit)")
    t.set_defaults(func=cmd_train, parser=t)

    e = sub.add_parser("evaluate", help="test accuracy, loss and confusion matrix of a checkpoint",
                       description="Evaluate a checkpoint on the MNIST test set: accuracy, mean loss and the "
                                   "confusion matrix (rows: true digit, columns: predicted).")
    e.add_argument("checkpoint", metavar="CHECKPOINT")
    data_args(e)
    e.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N test images")
    e.add_argument("--batch-size", type=_positive_int, default=1000, help="images per forward pass (default 1000)")
    e.add_argument("--processes", type=_positive_int, metavar="P",
                   help="split every batch over P processes (default: one per BLAS thread, or $LENET_PROCESSES)")
    e.set_defaults(func=cmd_evaluate, parser=e)

    s = sub.add_parser("summary", help="print the layer table of a LeNet-5 variant or a checkpoint",
                       description="Print each layer's output shape, parameter count and multiply-adds, of a "
                                   "checkpoint's model or of a fresh LeNet-5 variant.",
                       epilog="Examples:\n  python -m lenet_core summary lenet5-classic.npz\n"
                              "  python -m lenet_core summary --variant modern",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("checkpoint", metavar="CHECKPOINT", nargs="?", help="describe this checkpoint's model")
    s.add_argument("--variant", choices=["classic", "modern"], help="without a checkpoint: default classic")
    s.add_argument("--checkpoint", dest="checkpoint_option", metavar="CHECKPOINT", help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_summary, parser=s)

    p = sub.add_parser("predict", help="read your own handwritten digits from image files",
                       description="Predict the digit in each image (PNG, JPEG, ...; any size or color; dark "
                                   "ink on light paper or the other way round). Each image is converted the way "
                                   "MNIST was made: grayscale, inverted if the background is light, cropped to "
                                   "the ink, scaled to 20 px, centered by center of mass in 28x28, padded to 32x32.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--top", type=_positive_int, default=3, help="how many probabilities to show (default 3)")
    p.set_defaults(func=cmd_predict, parser=p)
    _add_export_command(sub)
    return parser


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _out(*args):
    print(*args, flush=True)


def _checkpoint_normalizes(ckpt) -> bool:
    """Whether the checkpoint's model was trained on standardized inputs (CLI runs record it)."""
    return bool(((ckpt.extra or {}).get("train_args") or {}).get("normalize", False))


def _ensure_data(args, splits):
    """Every MNIST file the command needs is there, or downloaded now; one error lists all that are
    missing, in the command line's own terms."""
    root = Path(args.data_dir).expanduser() if args.data_dir else default_root()
    args.stage = "download"
    ensure_mnist(root, splits, download=not args.no_download, quiet=getattr(args, "no_progress", False),
                 point_at=POINT_AT, allow_download="Or drop --no-download to download them.")
    args.stage = "run"
    return root


def _load_split(split, root, limit=None, normalize=False):
    images, labels = load_mnist(split, root=root, download=False)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = prepare_lenet_input(images)
    return (standardize(x) if normalize else x), labels.astype(np.int64)


def _check_writable_output(output: Path) -> None:
    """UsageError/OSError now, not after the first epoch, if ``output`` cannot be written."""
    directory = output.parent if str(output.parent) else Path(".")
    if output.is_dir():
        raise UsageError(f"--output {output} is a directory; give a file name, e.g. {output / 'lenet5.npz'}")
    if not directory.is_dir():
        raise UsageError(f"--output {output}: directory {directory} does not exist")
    probe = directory / temp_name(output.name, ".tmp")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise PermissionError(f"cannot write the checkpoint into {directory.resolve()}: "
                              f"{(exc.strerror or str(exc)).lower()}. Choose a writable place with "
                              "--output PATH, or make that directory writable.") from None


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _stored_train_args(ckpt, path) -> dict:
    """The settings a CLI run recorded in its checkpoint, checked to be resumable."""
    stored = (ckpt.extra or {}).get("train_args")
    if not stored:
        raise UsageError(f"{path} was not written by 'python -m lenet_core train', so the settings "
                         "needed to resume exactly are unknown; resume it from Python with fit(..., "
                         "start_epoch=ckpt.epoch, history=ckpt.history)")
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path}: its recorded training settings are not a dict; it cannot be resumed")
    bad = [k for k, ok in _TRAIN_ARG_OK.items() if k in stored and not ok(stored[k])]
    bad += sorted(set(stored) - set(_TRAIN_ARG_OK))
    if bad:
        raise CheckpointError(f"{path}: its recorded training settings are malformed ({', '.join(bad)}); "
                              "it cannot be resumed")
    stored = dict(stored)
    if ckpt.model.name != f"lenet5-{stored.get('variant', DEFAULTS['variant'])}":
        raise CheckpointError(f"{path}: its settings say variant {stored.get('variant')!r} but it holds "
                              f"{ckpt.model.name}; it cannot be resumed")
    if ckpt.history is not None and ckpt.history.epochs != ckpt.epoch:
        raise CheckpointError(f"{path}: it says {ckpt.epoch} epochs were trained but its history records "
                              f"{ckpt.history.epochs}; it cannot be resumed exactly")
    return stored


def format_confusion_matrix(cm) -> str:
    """A text table: rows are true classes, columns predictions, plus each row's accuracy."""
    cm = np.asarray(cm)
    k = cm.shape[0]
    width = max(4, len(str(int(cm.max()))) + 1)
    head = "true\\pred" + "".join(f"{j:>{width}}" for j in range(k)) + "   recall"
    lines = [head, "-" * len(head)]
    for i in range(k):
        total = cm[i].sum()
        recall = f"{100 * cm[i, i] / total:7.2f}%" if total else "      -"
        lines.append(f"{i:>9}" + "".join(f"{int(v):>{width}}" for v in cm[i]) + " " + recall)
    return "\n".join(lines)


def _describe_checkpoint(ckpt) -> str:
    extra = ckpt.extra or {}
    args = extra.get("train_args", {})
    bits = [f"{ckpt.model.name}", f"{ckpt.epoch} epoch{'s' if ckpt.epoch != 1 else ''}"]
    if args:
        bits.append(f"{args.get('optimizer')} lr {args.get('lr'):g}, batch {args.get('batch_size')}")
    return ", ".join(bits)


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------


def cmd_train(args) -> int:
    given = {k: getattr(args, k) for k in DEFAULTS if k != "epochs" and getattr(args, k) is not None}
    ckpt = None
    if args.resume:
        ckpt = load_checkpoint(args.resume)
        stored = _stored_train_args(ckpt, args.resume)
        conflicts = [f"--{k.replace('_', '-')} {given[k]} (checkpoint: {stored.get(k)})"
                     for k in RESUME_FIXED if k in given and given[k] != stored.get(k)]
        if conflicts:
            raise UsageError("resuming continues the checkpoint's run exactly, so these settings cannot change: "
                             + "; ".join(conflicts) + ". Start a new run (without --resume) to change them.")
        settings = {**DEFAULTS, **stored}
        if "lr" in given:
            settings["lr"] = given["lr"]
        if ckpt.epoch >= args.epochs:
            _out(f"{args.resume} has already trained {ckpt.epoch} epoch{'s' if ckpt.epoch != 1 else ''} "
                 f"({_describe_checkpoint(ckpt)}); with --epochs {args.epochs} there is nothing to train and "
                 f"nothing was written. To train further, give --epochs {ckpt.epoch + 1} or more.")
            return 0
    else:
        settings = {**DEFAULTS, **given}
    settings["epochs"] = args.epochs
    output = Path(args.output or args.resume or f"lenet5-{settings['variant']}.npz")
    if output.exists() and not output.is_dir() and not args.force and not (args.resume
                                                                           and _same_file(output, args.resume)):
        raise UsageError(f"{output} already exists and training would replace it. Pass --force to replace it, "
                         f"--resume {output} to continue its run, or choose another file with --output.")
    _check_writable_output(output)
    args.output_path = output
    args.saved_epoch = ckpt.epoch if ckpt is not None and _same_file(output, args.resume) else None
    root = _ensure_data(args, ["train", "test"])

    limit, val_size = settings["limit"], settings["val_size"]
    x, y = _load_split("train", root, limit, settings["normalize"])
    x_test, y_test = _load_split("test", root, limit, settings["normalize"])
    x_val = y_val = None
    if val_size:
        if val_size >= len(x):
            raise UsageError(f"--val-size {val_size} leaves no training images (only {len(x)} available)")
        (x, y), (x_val, y_val) = train_val_split(x, y, val_size=val_size, seed=settings["seed"])

    if ckpt is not None:
        model = ckpt.model
        optimizer = ckpt.make_optimizer()
        optimizer.lr = settings["lr"]
        start, history = ckpt.epoch, ckpt.history
        _out(f"Resuming {args.resume}: {_describe_checkpoint(ckpt)}.")
    else:
        model = lenet5(settings["variant"], seed=settings["seed"])
        optimizer = make_optimizer(settings["optimizer"], model, settings["lr"])
        start, history = 0, None
    schedule = None
    if settings["schedule"] != "constant":
        schedule = make_schedule(settings["schedule"], settings["lr"], settings["epochs"])
    split = f", {len(x_val):,} held out for validation" if x_val is not None else ""
    _out(f"Training {model.name} ({model.num_params():,} parameters) on {len(x):,} images{split}; "
         f"{settings['optimizer']} lr {settings['lr']:g}, batch {settings['batch_size']}, seed {settings['seed']}, "
         f"epochs {start + 1}-{args.epochs} -> {output}")

    bars = not args.no_progress and interactive(sys.stdout) and interactive(sys.stderr)

    def report(epoch, hist):
        args.saved_epoch = epoch   # fit has just saved it
        last = hist.last()
        line = (f"epoch {epoch:>3}/{args.epochs}  loss {last['train_loss']:.4f}  acc {100 * last['train_acc']:.2f}%")
        if x_val is not None:
            line += f"  val_loss {last['val_loss']:.4f}  val_acc {100 * last['val_acc']:.2f}%"
        line += f"  lr {last['lr']:.3g}  {last['seconds']:.1f}s"
        if not bars:
            _out(line)

    train_args = {k: settings[k] for k in DEFAULTS if k != "epochs"}
    t0 = time.perf_counter()
    args.stage = "train"
    history = fit(model, optimizer, x, y, args.epochs, batch_size=settings["batch_size"], x_val=x_val, y_val=y_val,
                  seed=settings["seed"], schedule=schedule, progress=bars, start_epoch=start,
                  history=history, on_epoch_end=report, checkpoint_path=output,
                  checkpoint_extra={"train_args": train_args}, processes=args.processes)
    elapsed = time.perf_counter() - t0
    test_loss, test_acc = evaluate(model, x_test, y_test, processes=args.processes)
    save_checkpoint(output, model, optimizer, epoch=max(start, history.epochs), history=history,
                    extra={"train_args": train_args, "fit": {"seed": settings["seed"],
                                                             "batch_size": settings["batch_size"]},
                           "test": {"loss": test_loss, "accuracy": test_acc, "images": len(x_test)}})
    ran = history.epochs - start
    if ran > 0:
        _out(f"Trained {ran} epoch{'s' if ran != 1 else ''} in {elapsed:.1f}s "
             f"({elapsed / ran:.1f}s per epoch).")
    _out(f"Test accuracy: {100 * test_acc:.2f}% ({len(x_test):,} images), test loss {test_loss:.4f}")
    _out(f"Saved {output}")
    return 0


def cmd_evaluate(args) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    root = _ensure_data(args, ["test"])
    x, y = _load_split("test", root, args.limit, _checkpoint_normalizes(ckpt))
    loss, acc = evaluate(ckpt.model, x, y, batch_size=args.batch_size, processes=args.processes)
    cm = confusion_matrix(y, predict(ckpt.model, x, batch_size=args.batch_size, processes=args.processes))
    _out(f"Checkpoint: {args.checkpoint} ({_describe_checkpoint(ckpt)})")
    _out(f"Test images: {len(x):,}")
    _out(f"Accuracy: {100 * acc:.2f}% ({int(np.trace(cm)):,} correct, {len(x) - int(np.trace(cm)):,} wrong)")
    _out(f"Loss: {loss:.4f}")
    _out("Confusion matrix (rows: true digit, columns: predicted digit):")
    _out(format_confusion_matrix(cm))
    return 0


def cmd_summary(args) -> int:
    path = args.checkpoint or args.checkpoint_option
    if args.checkpoint and args.checkpoint_option:
        raise UsageError("give the checkpoint once (as CHECKPOINT)")
    if path and args.variant:
        raise UsageError("give either a CHECKPOINT or --variant, not both: a checkpoint has its own architecture")
    model = load_checkpoint(path).model if path else lenet5(args.variant or "classic", seed=0)
    _out(model.name)
    model.summary(print_fn=_out)
    return 0


def cmd_predict(args) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    normalize = _checkpoint_normalizes(ckpt)
    failed = 0
    for path in args.images:
        try:
            x = preprocess_digit_image(path)
            x = standardize(x) if normalize else x
        except FileNotFoundError:
            _err(f"{path}: no such file")
            failed += 1
            continue
        except DigitImageError as exc:
            _err(f"{path}: {exc}" if str(exc).startswith("refused") else
                 f"{path}: cannot read a digit from this image ({exc})")
            failed += 1
            continue
        except (OSError, ValueError) as exc:   # e.g. a directory, or no digit in the picture
            _err(f"{path}: cannot read a digit from this image ({exc})")
            failed += 1
            continue
        probs = predict_proba(ckpt.model, x)[0]
        order = np.argsort(-probs, kind="stable")[:args.top]
        top = ", ".join(f"{int(d)}: " + (f"{100 * probs[d]:.1f}%" if probs[d] >= 5e-4 else "<0.1%") for d in order)
        _out(f"{path}: {int(order[0])}  ({top})")
    if failed:
        _err(f"{failed} of {len(args.images)} image{'s' if len(args.images) != 1 else ''} could not be read "
             "(see above)")
    return 1 if failed else 0


def _add_export_command(sub):
    x = sub.add_parser("export", help="write a checkpoint as one JSON file for the book's in-page network",
                       description="Write a checkpoint as a web export: one JSON file with the layers, the\n"
                                   "weights (float32, base64, with checksums) and the input preprocessing, which\n"
                                   "the book's page 'Draw a digit' loads with its file picker. Whether inputs are\n"
                                   "standardized, and the test accuracy, are read from the checkpoint.\n"
                                   "The format is described in lenet_core/webexport.py.",
                       epilog="Example:\n  python -m lenet_core train --epochs 3 -o mine.npz\n"
                              "  python -m lenet_core export mine.npz mine.web.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    x.add_argument("checkpoint", metavar="CHECKPOINT")
    x.add_argument("output", metavar="OUT", nargs="?",
                   help="the JSON file to write (default: the checkpoint's name with .web.json)")
    x.set_defaults(func=cmd_export, parser=x)


def cmd_export(args) -> int:
    try:
        out = export_checkpoint(args.checkpoint, args.output)
    except WebExportError as exc:
        _err(f"{args.checkpoint}: {exc}")
        return 1
    _out(f"Wrote {out} ({out.stat().st_size / 1024:.0f} KB): load it in the page 'Draw a digit' with "
         "'Load your own network'.")
    return 0


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------


def _err(message):
    print(f"error: {message}", file=sys.stderr, flush=True)


def _interrupted(args) -> str:
    """What Ctrl-C left behind, for the stage the command was in."""
    if args.stage == "download":
        return ("interrupted while downloading MNIST; no partial file was kept under its real name. Run the "
                "command again to download what is still missing.")
    if args.stage == "train":
        output, epoch = args.output_path, args.saved_epoch
        if epoch:
            return (f"interrupted; {output} holds epoch {epoch}, the last one completed. Continue with: "
                    f"python -m lenet_core train --resume {output} --epochs {args.epochs}")
        return "interrupted before the first epoch ended; no checkpoint was written."
    return "interrupted"


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2)
        return int(exc.code or 0)
    args.stage = "run"
    try:
        return args.func(args)
    except UsageError as exc:
        args.parser.print_usage(sys.stderr)
        _err(str(exc))
        return 2
    except FileNotFoundError as exc:
        _err(str(exc) if not exc.filename else f"{exc.strerror}: {exc.filename}")
        return 1
    except TrainingDiverged as exc:
        message = str(exc).replace(f"e.g. {exc.suggested_lr:g}.", f"e.g. --lr {exc.suggested_lr:g}.")
        if getattr(args, "saved_epoch", None):
            message += f" {args.output_path} holds epoch {args.saved_epoch}."
        else:
            message += " No checkpoint was written."
        _err(message)
        return 1
    except (CheckpointError, IDXFormatError) as exc:
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        _err(_interrupted(args))
        return 130
    except (MNISTDownloadError, OSError) as exc:
        _err(str(exc))
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
