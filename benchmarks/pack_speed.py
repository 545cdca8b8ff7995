"""Training throughput of packed models vs the same models trained one after another.

    python benchmarks/pack_speed.py                  # cpu preset and paper sizes, CPU (+ CUDA)
    python benchmarks/pack_speed.py --sizes cpu --members 1 3 7 --repeats 5

One training step of sequential-MNIST classifiers (B images of T = 196 pixels each, cross
entropy, backward, per-model gradient clipping, Adam): for each M, a pack of M RIMs (Ka
1..Kt in turn) against M separate models stepped one after another, timed alternately in
the same run. Prints model-samples per second (M x B / step time, median over repeats,
with the slowest and fastest repeat) and the speed-up, and writes the rows as JSON. With
``--compile`` the pack is also timed with its RIM step compiled (``compile_steps``; the
compilation happens in the warm-up round and is reported apart). Pure torch: it runs where
Ray is not installed.
"""

import argparse
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

if not __package__:  # run as a file (python benchmarks/pack_speed.py): import from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import write_report
from rim_rllib.cli import HelpFormatter
from rim_rllib.models import MNIST_SIZES, SequenceClassifier
from rim_rllib.packing import optimise_members_, pack
from rim_rllib.rim import compile_steps

STEPS = 196  # 14 x 14 pixels, the training size
BATCH = {"cpu": 16, "paper": 64}  # the batch sizes of the presets of those names


def make_models(sizes: dict, members: int, device: str) -> list[SequenceClassifier]:
    units = sizes["num_units"]
    return [SequenceClassifier("rim", 1, 10, k=1 + m % units, **sizes).to(device)
            for m in range(members)]


def train_step(model, optimizer, x, y, members: int) -> None:
    logits = model(x).view(members, -1, 10)
    losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
    # Per-member clipping: clip_grad_norm_ for one model.
    optimise_members_(model, optimizer, losses.view(members, -1).sum(1), 1.0)


def bench(name: str, members: int, batch: int, device: str, repeats: int,
          compiled: bool = False) -> dict:
    torch.manual_seed(0)
    sizes = MNIST_SIZES[name]
    separate = make_models(sizes, members, device)
    packs = {"packed": pack(make_models(sizes, members, device))}
    if compiled:
        packs["compiled"] = compile_steps(pack(make_models(sizes, members, device)))
    x = torch.randint(0, 2, (members, batch, STEPS, 1), device=device).float()
    y = torch.randint(0, 10, (members, batch), device=device)
    separate_opts = [torch.optim.Adam(m.parameters()) for m in separate]

    def run_separate():
        for i, (model, opt) in enumerate(zip(separate, separate_opts)):
            train_step(model, opt, x[i], y[i], 1)

    runs = {label: partial(train_step, model, torch.optim.Adam(model.parameters()), x, y,
                           members) for label, model in packs.items()}
    runs["separate"] = run_separate
    times = {label: [] for label in runs}
    warmup = {}
    for repeat in range(repeats + 1):  # the first round warms up (and compiles)
        for label, run in runs.items():
            start = time.perf_counter()
            run()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            if repeat:
                times[label].append(elapsed)
            else:
                warmup[label] = elapsed
    row = dict(sizes=name, device=device, members=members, batch=batch, steps=STEPS,
               repeats=repeats, threads=torch.get_num_threads())
    if compiled:
        row["compile_s"] = warmup["compiled"] - warmup["packed"]
    for label, values in times.items():
        rates = [members * batch / t for t in values]
        row[f"{label}_samples_per_s"] = statistics.median(rates)
        row[f"{label}_samples_per_s_range"] = [min(rates), max(rates)]
    row["speedup"] = row["packed_samples_per_s"] / row["separate_samples_per_s"]
    if compiled:
        row["compiled_speedup"] = row["compiled_samples_per_s"] / row["packed_samples_per_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(MNIST_SIZES),
                        choices=list(MNIST_SIZES), help="model sizes of these presets")
    parser.add_argument("--members", type=int, nargs="+", default=[1, 3, 7, 21])
    parser.add_argument("--batch", type=int, default=None,
                        help=f"images per model and step (default: the preset's, {BATCH})")
    parser.add_argument("--devices", nargs="+", default=None,
                        help="default: cpu, plus cuda when available")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (a trial uses one)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the pack with its RIM step compiled")
    parser.add_argument("--json", type=Path, default=Path("results/benchmarks/pack_speed.json"))
    args = parser.parse_args()
    for name, values, low in (("--members", args.members, 1),
                              ("--batch", [1 if args.batch is None else args.batch], 1),
                              ("--repeats", [args.repeats], 1),
                              ("--threads", [args.threads], 1)):
        if min(values) < low:
            parser.error(f"{name} must be >= {low}, got {min(values)}")
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for device in devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            parser.error(f"--devices: {device!r} requested but CUDA is not available")
    torch.set_num_threads(args.threads)

    rows = []
    labels = ["packed", "separate"] + (["compiled"] if args.compile else [])
    titles = {"packed": "packed samples/s", "separate": "one after another",
              "compiled": "packed, compiled"}
    print(f"{'sizes':6} {'device':6} {'M':>3} {'B':>3} {titles['packed']:>22} "
          f"{titles['separate']:>22} {'speed-up':>8}"
          + (f" {titles['compiled']:>22} {'vs eager':>8} {'compile':>7}"
             if args.compile else ""))
    for device in devices:
        for name in args.sizes:
            for members in args.members:
                row = bench(name, members, args.batch or BATCH[name], device, args.repeats,
                            args.compile)
                rows.append(row)
                cells = {label: "{:7.0f} ({:>12})".format(
                    row[f"{label}_samples_per_s"],
                    "{:.0f}-{:.0f}".format(*row[f"{label}_samples_per_s_range"]))
                    for label in labels}
                line = (f"{name:6} {device:6} {members:3d} {row['batch']:3d} "
                        f"{cells['packed']} {cells['separate']} {row['speedup']:8.2f}")
                if args.compile:
                    line += (f" {cells['compiled']} {row['compiled_speedup']:8.2f} "
                             f"{row['compile_s']:6.0f}s")
                print(line, flush=True)

    report = dict(torch=torch.__version__, machine=platform.machine(),
                  processor=platform.processor(),
                  cuda=torch.cuda.get_device_name() if "cuda" in devices else None, rows=rows)
    write_report(report, args.json)


if __name__ == "__main__":
    main()
