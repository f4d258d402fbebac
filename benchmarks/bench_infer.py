"""Inference throughput of LeNet-5 (images per second): lenet_core (NumPy) against PyTorch (CPU).

The 10,000 test images go through the network in evaluation mode at batch size 1
(latency-bound: per-call overhead dominates) and 1000 (throughput-bound). PyTorch
runs under ``torch.inference_mode()``; both use the same weights, the same float32
batches and the same number of threads, each framework in its own child process,
alternating. Reported: median [min - max] images/s over ``--repeats`` passes over
the test set, peak resident memory, and the ratio lenet_core / PyTorch of the
medians (above 1: lenet_core is faster). The LAST line is the ratio at batch 1000
for the classic variant (geometric mean over the variants measured is printed too).

    python benchmarks/bench_infer.py
    python benchmarks/bench_infer.py --variants classic --batch-sizes 1000 --limit 2000
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

SEED = 0


def child(job: dict) -> dict:
    import contextlib

    import numpy as np
    import lenet_core as lc
    from lenet_core.torch_compat import to_torch_module

    C.set_threads(job["framework"], job["threads"])
    images, _ = C.load_staged(job["data"])
    make_batch = C.BatchMaker(images)
    bs = job["batch_size"]
    batches = [np.arange(i, min(i + bs, len(images))) for i in range(0, len(images), bs)]
    session = contextlib.ExitStack()  # lenet_core: BLAS on one thread per process while timed
    model = lc.lenet5(job["variant"], seed=SEED).eval()
    if job["framework"] == "lenet_core":
        runner = session.enter_context(lc.DataParallel(model, job["threads"]))  # what predict() uses: one process per core

        def predict(idx):
            return runner.infer(make_batch(idx)).argmax(axis=1)
    else:
        import torch
        net = to_torch_module(model).eval()

        def predict(idx):
            with torch.inference_mode():
                return net(torch.from_numpy(make_batch(idx))).argmax(dim=1).numpy()
    for idx in batches[:5]:   # warm-up, not timed
        predict(idx)
    cpu0, t0 = C.cpu_seconds(), time.perf_counter()
    workers0 = C.worker_stats(job["framework"])
    for _ in range(job.get("passes", 1)):
        for idx in batches:
            predict(idx)
    seconds = time.perf_counter() - t0
    cpu, workers = C.cpu_seconds() - cpu0, C.worker_stats(job["framework"])
    cpu += sum(w["cpu_seconds"] for w in workers) - sum(w["cpu_seconds"] for w in workers0)
    return {"seconds": seconds, "cpu": cpu, "rss_mb": C.peak_rss_mb() + sum(w["peak_rss_mb"] for w in workers),
            "processes": 1 + len(workers), "images": len(images) * job.get("passes", 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=C.default_data_dir(),
                   help=f"MNIST-format root; default $LENET_DATA_DIR or {C.REFERENCE_DATA}")
    p.add_argument("--variants", default="classic,modern")
    p.add_argument("--batch-sizes", default="1,1000")
    p.add_argument("--limit", type=int, default=None, help="use only the first LIMIT test images")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--passes", type=int, default=1,
                   help="passes over the test images per timed run (more: less noise from a busy host)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--frameworks", default="lenet_core,torch")
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
    print(f"data: {args.data_dir} (test split), limit: {args.limit or 'all'}, repeats: {args.repeats}, "
          f"passes per run: {args.passes}")
    print()
    header = f"{'variant':8} {'batch':>5} {'framework':10} {'images/s median [min - max]':>32} {'peak MB':>8}"
    print(header)
    print("-" * len(header))
    workdir = tempfile.mkdtemp(prefix="lenet-bench-")
    data = C.stage_split(args.data_dir, "test", args.limit, workdir)
    results, ratios = [], {}
    for variant in args.variants.split(","):
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            runs = {f: [] for f in frameworks}
            for r in range(args.repeats):
                for fw in (frameworks if r % 2 == 0 else frameworks[::-1]):
                    job = dict(framework=fw, variant=variant, batch_size=bs, data=data, threads=threads,
                               passes=args.passes)
                    runs[fw].append(C.run_child(os.path.abspath(__file__), job, threads,
                                                C.SyntheticLoad(args.load, args.load_duty)))
            medians = {}
            for fw in frameworks:
                med, lo, hi = C.summarize([m["images"] / m["seconds"] for m in runs[fw]])
                rss = max(m["rss_mb"] for m in runs[fw])
                medians[fw] = med
                print(f"{variant:8} {bs:5d} {fw:10} {med:12,.0f} [{lo:8,.0f} - {hi:8,.0f}] {rss:8.0f}", flush=True)
                results.append(dict(variant=variant, batch_size=bs, framework=fw, images_per_second=med,
                                    min=lo, max=hi, peak_rss_mb=rss, runs=runs[fw]))
            if len(frameworks) == 2:
                ratios[(variant, bs)] = medians["lenet_core"] / medians["torch"]
                print(f"{'':8} {'':5} {'ratio':10} {ratios[(variant, bs)]:12.2f}  (lenet_core / PyTorch throughput)",
                      flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": C.machine_description(threads, how), "results": results}, fh, indent=1)
    big = max(int(b) for b in args.batch_sizes.split(","))
    at_big = [r for (v, b), r in ratios.items() if b == big]
    if at_big:
        print(f"geometric-mean throughput ratio lenet_core / PyTorch at batch {big} "
              f"(all variants measured): {C.geomean(at_big):.3f}")
    key = ("classic", big)
    print(f"throughput ratio lenet_core / PyTorch (classic, batch {big}): "
          + (f"{ratios[key]:.3f}" if key in ratios else "not measured"))


if __name__ == "__main__":
    main()
