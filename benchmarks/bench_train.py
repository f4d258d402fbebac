"""Time one training epoch of LeNet-5: lenet_core (NumPy) against the same network in PyTorch (CPU).

One epoch = every training image once, in shuffled mini-batches: forward pass,
softmax cross-entropy, backward pass, SGD step (momentum 0.9, lr 0.01). Both
frameworks start from the same weights (lenet_core's, copied into PyTorch's twin
built by ``lenet_core.torch_compat``), visit the images in the same order and get
the same float32 batches (uint8 images scaled to [0, 1] and padded to 32x32 per
batch). Neither computes the gradient of the images (PyTorch: the input does not
require grad; lenet_core: ``model.backward(..., input_grad=False)``). Each epoch runs in its own child process, the frameworks alternating,
after a few warm-up steps that are not timed.

Reported per variant and batch size: median [min - max] wall-clock seconds per
epoch over ``--repeats`` runs, CPU seconds (user + system, median), the peak
resident memory of the child (MB), and the ratio lenet_core / PyTorch of the
medians. The LAST line is the geometric mean of that ratio for the classic
variant at batch sizes 64 and 128.

    python benchmarks/bench_train.py                      # everything, Fashion-MNIST from Debian
    python benchmarks/bench_train.py --variants classic --batch-sizes 64 --limit 6000 --repeats 1
    python benchmarks/bench_train.py --data-dir ~/.cache/lenet/mnist --json results.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

LR, MOMENTUM, SEED, WARMUP_STEPS = 0.01, 0.9, 0, 10


def child(job: dict) -> dict:
    """Train one epoch in this process and return the measurements."""
    import contextlib

    import numpy as np
    import lenet_core as lc
    from lenet_core.torch_compat import to_torch_module

    C.set_threads(job["framework"], job["threads"])
    images, labels = C.load_staged(job["data"])
    make_batch = C.BatchMaker(images)
    bs = job["batch_size"]
    order = np.random.default_rng(SEED).permutation(len(images))
    batches = [order[i:i + bs] for i in range(0, len(order), bs)]
    session = contextlib.ExitStack()  # lenet_core: BLAS on one thread per process while timed
    model = lc.lenet5(job["variant"], seed=SEED)

    if job["framework"] == "lenet_core":
        opt = lc.SGD(model, lr=LR, momentum=MOMENTUM)
        runner = session.enter_context(lc.DataParallel(model, job["threads"]))  # what fit() uses: one process per core

        def step(idx):
            loss, _ = runner.train_step(make_batch(idx), labels[idx])   # forward, loss, backward (no image gradient)
            opt.step()
            return loss
    elif job["framework"] == "loop":     # a reader's own loop, as chapter 8 writes it: one process
        opt, loss_fn = lc.SGD(model, lr=LR, momentum=MOMENTUM), lc.SoftmaxCrossEntropy()

        def step(idx):
            loss = loss_fn.forward(model.forward(make_batch(idx)), labels[idx])
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()
            return loss
    else:
        import torch
        net = to_torch_module(model)
        loss_fn = torch.nn.CrossEntropyLoss()
        opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
        labels_t = torch.from_numpy(labels)

        def step(idx):
            x = torch.from_numpy(make_batch(idx))
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), labels_t[torch.from_numpy(idx)])
            loss.backward()
            opt.step()
            return loss.item()

    # Warm-up (not timed): first allocations, BLAS / thread-pool start-up. The work of a
    # step does not depend on the weights' values, so the timed epoch just continues.
    for idx in batches[:WARMUP_STEPS]:
        step(idx)
    cpu0, t0 = C.cpu_seconds(), time.perf_counter()
    workers0 = C.worker_stats(job["framework"])
    losses = [step(idx) for idx in batches]
    seconds = time.perf_counter() - t0
    cpu, workers = C.cpu_seconds() - cpu0, C.worker_stats(job["framework"])
    cpu += sum(w["cpu_seconds"] for w in workers) - sum(w["cpu_seconds"] for w in workers0)
    return {"seconds": seconds, "cpu": cpu, "rss_mb": C.peak_rss_mb() + sum(w["peak_rss_mb"] for w in workers),
            "processes": 1 + len(workers), "images": len(images), "final_loss": float(np.mean(losses[-20:]))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=C.default_data_dir(),
                   help="MNIST-format root (4 IDX files); default $LENET_DATA_DIR or "
                        f"{C.REFERENCE_DATA} (apt-get install dataset-fashion-mnist)")
    p.add_argument("--variants", default="classic,modern")
    p.add_argument("--batch-sizes", default="32,64,128,256")
    p.add_argument("--limit", type=int, default=None, help="use only the first LIMIT training images")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both frameworks (default: what NumPy's BLAS uses)")
    p.add_argument("--frameworks", default="lenet_core,torch",
                   help="comma-separated: lenet_core (as fit runs it), loop (a reader's own loop in one "
                        "process, BLAS on --threads threads), torch")
    p.add_argument("--json", help="also write all measurements to this JSON file")
    p.add_argument("--load", type=int, default=0, metavar="N",
                   help="keep N other processes busy while each run is timed (a shared, busy host)")
    p.add_argument("--load-duty", type=float, default=1.0, metavar="F",
                   help="fraction of the time each --load process spins (default 1: all the time)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if not args.data_dir:
        p.error("no data: pass --data-dir or install the Debian package dataset-fashion-mnist")

    threads, how = C.blas_threads()
    if args.threads:
        threads, how = args.threads, "--threads (threadpoolctl / environment)"
    frameworks = args.frameworks.split(",")
    if "torch" in frameworks and not C.torch_installed():
        print("PyTorch is not installed: timing lenet_core only")
        frameworks = [f for f in frameworks if f != "torch"]
    print("\n".join(C.machine_description(threads, how)))
    if args.load:
        print(f"synthetic load: {args.load} other process(es) spinning {args.load_duty:.0%} of the time during every run")
    print(f"data: {args.data_dir}, limit: {args.limit or 'all'}, repeats: {args.repeats}, "
          f"SGD lr {LR} momentum {MOMENTUM}, {WARMUP_STEPS} untimed warm-up steps")
    print()
    header = f"{'variant':8} {'batch':>5} {'framework':10} {'s/epoch median [min - max]':>28} {'CPU s':>7} {'peak MB':>8}"
    print(header)
    print("-" * len(header))

    workdir = tempfile.mkdtemp(prefix="lenet-bench-")
    data = C.stage_split(args.data_dir, "train", args.limit, workdir)
    results, ratios = [], {}
    for variant in args.variants.split(","):
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            runs = {f: [] for f in frameworks}
            for r in range(args.repeats):
                for fw in (frameworks if r % 2 == 0 else frameworks[::-1]):  # alternate who goes first
                    job = dict(framework=fw, variant=variant, batch_size=bs, data=data, threads=threads)
                    runs[fw].append(C.run_child(os.path.abspath(__file__), job, threads,
                                                C.SyntheticLoad(args.load, args.load_duty)))
            per_60k = 60000 / runs[frameworks[0]][0]["images"]
            medians = {}
            for fw in frameworks:
                med, lo, hi = C.summarize([m["seconds"] * per_60k for m in runs[fw]])
                cpu = C.summarize([m["cpu"] * per_60k for m in runs[fw]])[0]
                rss = max(m["rss_mb"] for m in runs[fw])
                medians[fw] = med
                print(f"{variant:8} {bs:5d} {fw:10} {med:10.2f} [{lo:6.2f} - {hi:6.2f}] {cpu:7.2f} {rss:8.0f}",
                      flush=True)
                results.append(dict(variant=variant, batch_size=bs, framework=fw, seconds_per_epoch=med,
                                    min=lo, max=hi, cpu_seconds=cpu, peak_rss_mb=rss, runs=runs[fw]))
            for fw in (f for f in frameworks if f != "torch" and "torch" in medians):
                ratio = medians[fw] / medians["torch"]
                if fw == "lenet_core":
                    ratios[(variant, bs)] = ratio
                print(f"{'':8} {'':5} {'ratio':10} {ratio:10.2f}  ({fw} / PyTorch)", flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    if args.limit:
        print(f"\n(seconds per epoch extrapolated to 60,000 images from {args.limit})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": C.machine_description(threads, how), "results": results}, fh, indent=1)
    headline = [ratios[("classic", b)] for b in (64, 128) if ("classic", b) in ratios]
    label = "classic, batch " + " & ".join(str(b) for b in (64, 128) if ("classic", b) in ratios)
    print(f"geometric-mean ratio lenet_core / PyTorch ({label or 'not measured'}): "
          f"{C.geomean(headline):.3f}")


if __name__ == "__main__":
    main()
