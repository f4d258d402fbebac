"""Time the same step with two checkouts of lenet_core, side by side in one run.

Each measurement runs in a fresh child process with ``PYTHONPATH`` pointing at one checkout; the
checkouts alternate (and swap who goes first every repeat), so a slow phase of the machine hits both.
Prints the median milliseconds per step of each and the ratio to the first.

    git worktree add /tmp/before <commit>
    python benchmarks/compare_checkouts.py --checkouts before=/tmp/before,now=. --mode loop
    python benchmarks/compare_checkouts.py --checkouts before=/tmp/before,now=. --mode infer --batch 1000

Modes: ``loop`` (a reader's own training step in one process: forward, loss, backward, SGD),
``fit`` (the step ``fit`` runs: ``DataParallel`` over 2 processes, then SGD; a checkout without
``DataParallel.train_step`` runs the older forward/backward interface), ``infer`` (``DataParallel.infer``
on 2 processes, eval mode).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def child(mode: str, variant: str, batch: int, steps: int) -> float:
    import lenet_core as lc
    rng = np.random.default_rng(0)
    x = rng.random((batch * 8, 1, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, batch * 8)
    model = lc.lenet5(variant, seed=0)
    opt, loss_fn = lc.SGD(model, lr=0.01, momentum=0.9), lc.SoftmaxCrossEntropy()
    part = lambda i: slice((i % 8) * batch, (i % 8 + 1) * batch)      # noqa: E731
    if mode == "loop":
        def step(i):
            loss_fn.forward(model.forward(x[part(i)]), y[part(i)])
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()
    elif mode == "fit":
        runner = lc.DataParallel(model, 2).__enter__()

        def step(i):
            if hasattr(runner, "train_step"):
                runner.train_step(x[part(i)], y[part(i)])
            else:                                                      # the interface before 2026-12-03
                loss_fn.forward(runner.forward(x[part(i)]), y[part(i)])
                runner.backward(loss_fn.backward(), input_grad=False)
            opt.step()
    else:
        model.eval()
        runner = lc.DataParallel(model, 2).__enter__()

        def step(i):
            runner.infer(x[:batch])
    for i in range(5):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    return (time.perf_counter() - t0) / steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkouts", help="name=DIR,name=DIR (the first is the reference)")
    p.add_argument("--mode", choices=("loop", "fit", "infer"), default="loop")
    p.add_argument("--variant", default="classic")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        mode, variant, batch, steps = args.child
        print(json.dumps(child(mode, variant, int(batch), int(steps))))
        return
    if not args.checkouts:
        p.error("give --checkouts name=DIR,name=DIR")
    checkouts = dict(item.split("=", 1) for item in args.checkouts.split(","))
    times = {name: [] for name in checkouts}
    for r in range(args.repeats):
        for name in (list(checkouts) if r % 2 == 0 else list(checkouts)[::-1]):
            env = dict(os.environ, PYTHONPATH=os.path.abspath(checkouts[name]))
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", args.mode, args.variant,
                                  str(args.batch), str(args.steps)], env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{name}: {out.stderr[-2000:]}")
            times[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = statistics.median(times[next(iter(times))])
    print(f"{args.mode} {args.variant} batch {args.batch}, load average at the end: {os.getloadavg()[0]:.1f}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:12s} {med * 1e3:8.2f} ms per step  ({med / first:.3f}x)   runs: "
              + " ".join(f"{v * 1e3:.2f}" for v in values))


if __name__ == "__main__":
    main()
