"""Accuracy check: lenet_core against an identical PyTorch model on the offline MNIST-10k root.

Both models start from the same weights (the PyTorch twin is built with
``lenet_core.torch_compat.to_torch_module`` before training), see the training
images in the same order every epoch (``training.epoch_permutation(seed, e, N)``,
which is what ``fit`` uses), and train with the same recipe: batch 64, Adam with
lr 1e-3, 10 epochs, all 10,000 training images. The test accuracies on the
10,000 test images are printed side by side; the project's target is that
lenet_core lands within half a point of PyTorch (about 97.0 % classic and 98.1 %
modern on this subset).

    python benchmarks/accuracy_mnist10k.py                       # both variants, ~10-20 min on a laptop
    python benchmarks/accuracy_mnist10k.py --variants modern --epochs 2
    python benchmarks/accuracy_mnist10k.py --reuse .             # take our side from lenet5-<variant>.npz

``--reuse DIR`` skips training lenet_core and reads the checkpoints that
``python -m lenet_core train --variant <variant>`` (default recipe, same seed)
wrote into DIR; with the same seed they are the very run this script would
do. Data: ``--data-dir``, else ``$LENET_DATA_DIR``, else the offline root
``../shared/data/mnist-10k`` next to the repository.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import lenet_core as lc
from lenet_core.mnist import load_mnist
from lenet_core.preprocess import prepare_lenet_input, standardize
from lenet_core.training import epoch_permutation, evaluate, fit

RECIPE = {"batch_size": 64, "optimizer": "adam", "lr": 1e-3, "val_size": 0, "limit": None, "schedule": "constant"}
REFERENCE = {"classic": 0.970, "modern": 0.981}  # PyTorch recipe on mnist-10k (shared/data/README.md)


def _data_dir(arg):
    if arg:
        return Path(arg)
    if os.environ.get("LENET_DATA_DIR"):
        return Path(os.environ["LENET_DATA_DIR"])
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-10k"


def train_torch(model, x, y, x_test, y_test, epochs, seed, batch_size=64, lr=1e-3):
    """Train the PyTorch twin ``model`` (an nn.Sequential) exactly like ``fit`` trains ours."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    history = {"train_loss": [], "seconds": []}
    for e in range(epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.from_numpy(epoch_permutation(seed, e, len(x)))
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history["train_loss"].append(total / len(x))
        history["seconds"].append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(x_test[i:i + 1000])) for i in range(0, len(x_test), 1000)])
        test_loss = float(loss_fn(logits, torch.from_numpy(y_test.astype(np.int64))))
        acc = float((logits.argmax(1).numpy() == y_test).mean())
    return history, test_loss, acc


def ours_from_checkpoint(directory, variant, epochs, seed, normalize=True):
    """Our side of the comparison from a CLI checkpoint trained with the same recipe, or None."""
    from lenet_core.checkpoint import load_checkpoint

    path = Path(directory) / f"lenet5-{variant}.npz"
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path)
    args = (ckpt.extra or {}).get("train_args", {})
    wanted = dict(RECIPE, variant=variant, seed=seed, normalize=normalize)
    if any(args.get(k) != v for k, v in wanted.items()) or ckpt.epoch != epochs or "test" not in ckpt.extra:
        print(f"  {path} was not trained with this recipe ({args}, {ckpt.epoch} epochs); retraining", flush=True)
        return None
    t = ckpt.extra["test"]
    return ckpt.history, t["loss"], t["accuracy"], str(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir")
    p.add_argument("--variants", nargs="+", choices=["classic", "modern"], default=["classic", "modern"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse", metavar="DIR", help="read our results from CLI checkpoints lenet5-<variant>.npz in DIR")
    p.add_argument("--torch-threads", type=int, help="torch.set_num_threads (default: PyTorch's choice)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--progress", action="store_true", help="progress bars for our training")
    p.add_argument("--limit", type=int, help="only the first N training and test images (a smoke test)")
    p.add_argument("--no-normalize", action="store_true",
                   help="inputs in [0, 1] instead of standardized with MNIST's mean and std (the CLI default)")
    args = p.parse_args(argv)

    from lenet_core.torch_compat import require_torch, to_torch_module
    torch = require_torch()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    root = _data_dir(args.data_dir)
    x, y = load_mnist("train", root=root, download=False)
    x_test, y_test = load_mnist("test", root=root, download=False)
    if args.limit:
        x, y, x_test, y_test = x[:args.limit], y[:args.limit], x_test[:args.limit], y_test[:args.limit]
    x, x_test = prepare_lenet_input(x), prepare_lenet_input(x_test)
    if not args.no_normalize:
        x, x_test = standardize(x), standardize(x_test)
    y, y_test = y.astype(np.int64), y_test.astype(np.int64)
    print(f"MNIST root {root}: {len(x):,} training, {len(x_test):,} test images; batch 64, Adam 1e-3, "
          f"{args.epochs} epochs, seed {args.seed}; numpy {np.__version__}, torch {torch.__version__}", flush=True)

    results = {}
    for variant in args.variants:
        model = lc.lenet5(variant, seed=args.seed)
        twin = to_torch_module(model)  # same initial weights, copied before any training
        print(f"\n[{variant}] PyTorch twin ...", flush=True)
        t_hist, t_loss, t_acc = train_torch(twin, x, y, x_test, y_test, args.epochs, args.seed)
        reused = (ours_from_checkpoint(args.reuse, variant, args.epochs, args.seed, not args.no_normalize)
                  if args.reuse else None)
        if reused:
            o_hist, o_loss, o_acc, source = reused
            print(f"[{variant}] lenet_core: from {source}", flush=True)
        else:
            print(f"[{variant}] lenet_core ...", flush=True)
            opt = lc.Adam(model, 1e-3)
            o_hist = fit(model, opt, x, y, args.epochs, batch_size=64, seed=args.seed, progress=args.progress)
            o_loss, o_acc = evaluate(model, x_test, y_test)
            source = "trained here"
        for e in range(args.epochs):
            print(f"  epoch {e + 1:>2}: train loss  lenet_core {o_hist['train_loss'][e]:.4f}  "
                  f"PyTorch {t_hist['train_loss'][e]:.4f}", flush=True)
        results[variant] = {
            "lenet_core": {"test_accuracy": o_acc, "test_loss": o_loss, "train_loss": o_hist["train_loss"],
                           "epoch_seconds": o_hist["seconds"], "source": source},
            "pytorch": {"test_accuracy": t_acc, "test_loss": t_loss, "train_loss": t_hist["train_loss"],
                        "epoch_seconds": t_hist["seconds"]},
        }

    print(f"\nTest accuracy on {len(x_test):,} MNIST test images after training on {len(x):,} images:")
    head = f"{'variant':<8}  {'lenet_core':>10}  {'PyTorch':>8}  {'diff':>6}  {'reference':>9}  " \
           f"{'s/epoch ours':>12}  {'s/epoch torch':>13}"
    print(head)
    print("-" * len(head))
    ok = True
    for variant, r in results.items():
        o, t = r["lenet_core"], r["pytorch"]
        diff = 100 * (o["test_accuracy"] - t["test_accuracy"])
        ok &= abs(diff) <= 0.5
        print(f"{variant:<8}  {100 * o['test_accuracy']:>9.2f}%  {100 * t['test_accuracy']:>7.2f}%  {diff:>+6.2f}  "
              f"{100 * REFERENCE[variant]:>8.1f}%  {np.median(o['epoch_seconds']):>12.1f}  "
              f"{np.median(t['epoch_seconds']):>13.2f}")
    print(f"\nWithin half a point of PyTorch: {'yes' if ok else 'NO'} (s/epoch: median wall time)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
