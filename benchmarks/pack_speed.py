"""Training throughput of packed models vs the same models trained one after another.

    python benchmarks/pack_speed.py                  # cpu preset and paper sizes, CPU (+ CUDA)
    python benchmarks/pack_speed.py --sizes cpu --members 1 3 7 --repeats 5

One training step of sequential-MNIST classifiers (B images of T = 196 pixels each, cross
entropy, backward, per-model gradient clipping, Adam): for each M, a pack of M RIMs (Ka
1..Kt in turn) against M separate models stepped one after another, timed alternately in
the same run. Prints model-samples per second (M x B / step time, median over repeats,
with the slowest and fastest repeat) and the speed-up, and writes the rows as JSON. Pure
torch: it runs where Ray is not installed.
"""

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from report import write_report
from rim_rllib.models import MNIST_SIZES, SequenceClassifier
from rim_rllib.packing import member_grad_norm_clip_, pack

STEPS = 196  # 14 x 14 pixels, the training size
BATCH = {"cpu": 16, "paper": 64}  # the batch sizes of the presets of those names


def make_models(sizes: dict, members: int, device: str) -> list[SequenceClassifier]:
    units = sizes["num_units"]
    return [SequenceClassifier("rim", 1, 10, k=1 + m % units, **sizes).to(device)
            for m in range(members)]


def train_step(model, optimizer, x, y, members: int) -> None:
    logits = model(x).view(members, -1, 10)
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    member_grad_norm_clip_(model, members, 1.0)  # = clip_grad_norm_ for one model
    optimizer.step()


def bench(name: str, members: int, batch: int, device: str, repeats: int) -> dict:
    torch.manual_seed(0)
    sizes = MNIST_SIZES[name]
    separate = make_models(sizes, members, device)
    packed = pack(make_models(sizes, members, device))
    x = torch.randint(0, 2, (members, batch, STEPS, 1), device=device).float()
    y = torch.randint(0, 10, (members, batch), device=device)
    packed_opt = torch.optim.Adam(packed.parameters())
    separate_opts = [torch.optim.Adam(m.parameters()) for m in separate]

    def run_packed():
        train_step(packed, packed_opt, x, y, members)

    def run_separate():
        for i, (model, opt) in enumerate(zip(separate, separate_opts)):
            train_step(model, opt, x[i], y[i], 1)

    times = {"packed": [], "separate": []}
    for repeat in range(repeats + 1):  # the first round warms up
        for label, run in (("packed", run_packed), ("separate", run_separate)):
            start = time.perf_counter()
            run()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if repeat:
                times[label].append(time.perf_counter() - start)
    row = dict(sizes=name, device=device, members=members, batch=batch, steps=STEPS,
               repeats=repeats, threads=torch.get_num_threads())
    for label, values in times.items():
        rates = [members * batch / t for t in values]
        row[f"{label}_samples_per_s"] = statistics.median(rates)
        row[f"{label}_samples_per_s_range"] = [min(rates), max(rates)]
    row["speedup"] = row["packed_samples_per_s"] / row["separate_samples_per_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    print(f"{'sizes':6} {'device':6} {'M':>3} {'B':>3} {'packed samples/s':>22} "
          f"{'one after another':>22} {'speed-up':>8}")
    for device in devices:
        for name in args.sizes:
            for members in args.members:
                row = bench(name, members, args.batch or BATCH[name], device, args.repeats)
                rows.append(row)
                ranges = {label: "{:.0f}-{:.0f}".format(*row[f"{label}_samples_per_s_range"])
                          for label in ("packed", "separate")}
                print(f"{name:6} {device:6} {members:3d} {row['batch']:3d} "
                      f"{row['packed_samples_per_s']:7.0f} ({ranges['packed']:>12}) "
                      f"{row['separate_samples_per_s']:7.0f} ({ranges['separate']:>12}) "
                      f"{row['speedup']:8.2f}", flush=True)

    report = dict(torch=torch.__version__, machine=platform.machine(),
                  processor=platform.processor(),
                  cuda=torch.cuda.get_device_name() if "cuda" in devices else None, rows=rows)
    write_report(report, args.json)


if __name__ == "__main__":
    main()
