"""Training-step time on a GPU: eager vs torch.compile vs CUDA-graph capture, packs of M.

    python benchmarks/gpu_step.py                         # everything, on CUDA
    python benchmarks/gpu_step.py --configs mnist --members 1 21 --modes eager graphed

One training step as the sequence trainables run it (forward, cross entropy, backward,
per-member gradient clipping, capturable Adam; :func:`rim_rllib.packing.optimise_members_`)
of a pack of M RIM classifiers (Ka = 1..Kt in turn) in each mode:

- ``eager``: plain PyTorch, a few dozen kernel launches per time step;
- ``compiled``: the RIM step through ``torch.compile`` (:func:`rim_rllib.compile_steps`);
- ``graphed`` / ``compiled+graphed``: the whole step captured once as a CUDA graph and
  replayed (:class:`rim_rllib.cuda_graph.GraphedStep`).

Reference: one ``nn.LSTM`` of hidden Kt*H (cuDNN) in the same step, eager. Configs:
``mnist``, the reference's sequential-MNIST model (B=64, T=196, Kt=6, H=100), and
``minigrid``, the MiniGrid agent's recurrent core (B=256, T=32, D=64, Kt=4, H=16) with a
linear head. Each row: milliseconds per step (median over rounds, with the fastest and
slowest round), model-samples per second, time per step over the LSTM's, and throughput
over one eager RIM's. Ends with the projected training time of the paper MNIST sweep
(6 Ka x 3 seeds RIMs + 3 LSTMs, 100 epochs of 937 batches; evaluation not included).
Pure torch: runs where Ray is not installed. Writes the rows as JSON.
"""

import argparse
import gc
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

if not __package__:  # run as a file (python benchmarks/gpu_step.py): import from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import write_report
from rim_rllib import compile_steps, pack
from rim_rllib.cli import HelpFormatter
from rim_rllib.cuda_graph import GraphedStep, capturable_adam
from rim_rllib.models import MNIST_SIZES, SequenceClassifier
from rim_rllib.packing import optimise_members_

CONFIGS = {
    "mnist": dict(batch=64, steps=196, input_size=1, classes=10,
                  sizes=MNIST_SIZES["paper"]),
    "minigrid": dict(batch=256, steps=32, input_size=64, classes=7,
                     sizes=dict(num_units=4, hidden_size=16, input_value_size=64)),
}
MODES = ("eager", "compiled", "graphed", "compiled+graphed")
PAPER_SWEEP = dict(rims=18, lstms=3, epochs=100, batches=60_000 // 64)


def build(config: dict, mode: str, members: int, device: str):
    """The model (a pack of ``members`` RIMs, or the reference LSTM for ``mode='lstm'``),
    its step function and a batch of inputs."""
    torch.manual_seed(0)
    sizes, units = config["sizes"], config["sizes"]["num_units"]
    if mode == "lstm":
        models = [SequenceClassifier("lstm", config["input_size"], config["classes"],
                                     sizes["hidden_size"], units)]
        model = models[0].to(device)
        forward = lambda x: model(x[0]).unsqueeze(0)  # noqa: E731  (unpacked: cuDNN's own)
    else:
        models = [SequenceClassifier("rim", config["input_size"], config["classes"],
                                     k=1 + m % units, **sizes) for m in range(members)]
        model = pack(models).to(device)
        if mode.startswith("compiled"):
            compile_steps(model)
        forward = model
    optimizer = capturable_adam(model.parameters(), 1e-3, torch.device(device))

    def step(x, y):
        logits = forward(x)
        losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        losses = losses.view(members, -1).mean(1)
        optimise_members_(model, optimizer, losses, 1.0)
        return losses.detach()

    if mode.endswith("graphed"):
        step = GraphedStep(step)
    x = torch.randint(0, 2, (members, config["batch"], config["steps"], config["input_size"]),
                      device=device).float()
    y = torch.randint(0, config["classes"], (members, config["batch"]), device=device)
    return step, x, y


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(name: str, mode: str, members: int, device: str, rounds: int,
          steps_per_round: int) -> dict:
    config = CONFIGS[name]
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    step, x, y = build(config, mode, members, device)
    start = time.perf_counter()
    for _ in range(4):  # warm-up: compilation, the capture (after 3 eager calls), caches
        step(x, y)
    synchronize(device)
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps_per_round):
            losses = step(x, y)
        synchronize(device)
        times.append((time.perf_counter() - start) / steps_per_round)
    if not torch.isfinite(losses).all():
        raise FloatingPointError(f"{name} {mode} M={members}: non-finite loss {losses}")
    ms = statistics.median(times) * 1e3
    row = dict(config=name, mode=mode, members=members, device=device,
               batch=config["batch"], steps=config["steps"], ms_per_step=ms,
               ms_range=[min(times) * 1e3, max(times) * 1e3],
               model_samples_per_s=members * config["batch"] / ms * 1e3,
               warmup_s=warmup_s, rounds=rounds, steps_per_round=steps_per_round)
    if device.startswith("cuda"):
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def projection(rows: list[dict]) -> dict | None:
    """Training GPU-hours of the paper MNIST sweep: 18 RIMs one at a time (eager) vs in
    the best-measured pack of at least 18, plus the 3 LSTMs, from the ``mnist`` rows."""
    mnist = [r for r in rows if r["config"] == "mnist" and "error" not in r]
    lstm = next((r for r in mnist if r["mode"] == "lstm"), None)
    one = next((r for r in mnist if r["mode"] == "eager" and r["members"] == 1), None)
    packs = [r for r in mnist if r["mode"] != "lstm" and r["members"] >= PAPER_SWEEP["rims"]]
    if not (lstm and one and packs):
        return None
    best = min(packs, key=lambda r: r["ms_per_step"])
    steps = PAPER_SWEEP["epochs"] * PAPER_SWEEP["batches"]
    lstm_h = PAPER_SWEEP["lstms"] * steps * lstm["ms_per_step"] / 3.6e6
    return dict(steps_per_model=steps,
                separate_eager_hours=PAPER_SWEEP["rims"] * steps * one["ms_per_step"] / 3.6e6
                + lstm_h,
                packed_hours=steps * best["ms_per_step"] / 3.6e6 + lstm_h,
                packed_mode=best["mode"], packed_members=best["members"], lstm_hours=lstm_h)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--members", type=int, nargs="+", default=[1, 7, 21])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--compile-members", type=int, nargs="+", default=None,
                        help="pack sizes timed in the compiled modes (default: --members; "
                             "each size compiles anew, ~1 min)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps-per-round", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("results/benchmarks/gpu_step.json"))
    args = parser.parse_args()
    for flag, values in (("--members", args.members), ("--rounds", [args.rounds]),
                         ("--steps-per-round", [args.steps_per_round]),
                         ("--compile-members", args.compile_members or [1])):
        if min(values) < 1:
            parser.error(f"{flag} must be >= 1, got {min(values)}")
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        parser.error(f"--device {args.device!r}: CUDA is not available")
    if not cuda and any(mode.endswith("graphed") for mode in args.modes):
        parser.error(f"--modes: the graphed modes need a CUDA --device, got {args.device!r}")

    print(f"{'config':9} {'mode':17} {'M':>3} {'ms/step':>9} {'(range)':>15} "
          f"{'samples/s':>10} {'x LSTM':>7} {'vs 1 eager':>10} {'warm-up':>8}")
    rows = []
    for name in args.configs:
        plan = [("lstm", 1)] + [(mode, m) for mode in args.modes for m in args.members
                                if not mode.startswith("compiled")
                                or m in (args.compile_members or args.members)]
        base = {}
        for mode, members in plan:
            try:
                row = bench(name, mode, members, args.device, args.rounds,
                            args.steps_per_round)
            except (RuntimeError, FloatingPointError) as error:  # the other rows still count
                print(f"{name:9} {mode:17} {members:3d} FAILED: {error}", flush=True)
                rows.append(dict(config=name, mode=mode, members=members, error=str(error)))
                continue
            finally:
                gc.collect()  # a dropped graph's memory pool goes back before the next row
            if mode == "lstm":
                base["lstm"] = row["ms_per_step"]
            if mode == "eager" and members == 1:
                base["one"] = row["model_samples_per_s"]
            row["ratio_to_lstm"] = (row["ms_per_step"] / base["lstm"]
                                    if "lstm" in base else None)
            row["speedup_vs_one_eager"] = (row["model_samples_per_s"] / base["one"]
                                           if "one" in base else None)
            rows.append(row)
            ratio, speedup = row["ratio_to_lstm"], row["speedup_vs_one_eager"]
            print(f"{name:9} {mode:17} {members:3d} {row['ms_per_step']:9.2f} "
                  f"{'{:.2f}-{:.2f}'.format(*row['ms_range']):>15} "
                  f"{row['model_samples_per_s']:10.0f} "
                  f"{'' if ratio is None else f'{ratio:.2f}':>7} "
                  f"{'' if speedup is None else f'{speedup:.2f}':>10} "
                  f"{row['warmup_s']:7.1f}s", flush=True)
    plan_hours = projection(rows)
    if plan_hours:
        print(f"paper MNIST sweep, training only ({plan_hours['steps_per_model']} steps per "
              f"model): {plan_hours['separate_eager_hours']:.1f} GPU-hours with every RIM "
              f"alone and eager; {plan_hours['packed_hours']:.1f} with the RIMs in one "
              f"{plan_hours['packed_mode']} pack (M={plan_hours['packed_members']} measured); "
              f"the 3 LSTMs {plan_hours['lstm_hours']:.2f} of each")
    report = dict(torch=torch.__version__, machine=platform.machine(),
                  device=torch.cuda.get_device_name() if cuda else platform.processor(),
                  rows=rows, paper_sweep=plan_hours)
    write_report(report, args.json)


if __name__ == "__main__":
    main()
