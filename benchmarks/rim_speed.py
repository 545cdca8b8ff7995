"""Forward+backward time of a whole sequence: our RIM vs the obvious per-unit RIM vs nn.LSTM.

    python benchmarks/rim_speed.py                 # CPU, and CUDA too when available
    python benchmarks/rim_speed.py --repeats 20 --json out.json

Prints a table (median seconds per forward+backward, and ratios to nn.LSTM with hidden
Kt*H, the fused baseline) and writes the same numbers as JSON. The "RIM packed" row runs a
PackedSequence of the batch with lengths drawn uniformly from [T/2, T] (unsorted); its
"x padded" column is its time over the padded batch of the same maximal length T.
"""

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

if not __package__:  # run as a file (python benchmarks/rim_speed.py): import from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import write_report
from rim_rllib import RIM
from rim_rllib.cli import HelpFormatter
from rim_rllib.reference import ReferenceRIMCell

CONFIGS = {
    "mnist": dict(batch=64, steps=196, input_size=1, num_units=6, hidden_size=100, k=4,
                  input_value_size=400),
    "minigrid": dict(batch=256, steps=32, input_size=64, num_units=4, hidden_size=16, k=3,
                     input_value_size=64),
    # The reference's MiniGrid model forced comm_value_size = hidden_size.
    "minigrid-comm16": dict(batch=256, steps=32, input_size=64, num_units=4, hidden_size=16,
                            k=3, input_value_size=64, comm_value_size=16),
}


class ReferenceRIM(nn.Module):
    """The obvious sequence loop over the obvious step (indexing ``x[t]`` each step)."""

    def __init__(self, rim: RIM):
        super().__init__()
        self.cell = ReferenceRIMCell.from_cell(rim.cells[0])
        self.shape = (rim.num_units, rim.hidden_size)

    def forward(self, x):
        zeros = x.new_zeros(x.shape[1], *self.shape)
        state, outputs = (zeros, zeros), []
        for t in range(x.shape[0]):
            state, _ = self.cell(x[t], state)
            outputs.append(state[0].flatten(1))
        return torch.stack(outputs), state


def time_fwd_bwd(model: nn.Module, x, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` forward+backward passes of ``model`` over ``x`` (a
    tensor or a PackedSequence), after ``warmup`` untimed ones."""
    def once():
        model.zero_grad(set_to_none=True)
        out = model(x)[0]
        (out.data if isinstance(out, PackedSequence) else out).sum().backward()
        if out.data.is_cuda:
            torch.cuda.synchronize()

    for _ in range(warmup):
        once()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return times


def bench(name: str, cfg: dict, device: str, warmup: int, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    rim_kwargs = {key: value for key, value in cfg.items() if key not in ("batch", "steps")}
    units, hidden = cfg["num_units"], cfg["hidden_size"]
    rim = RIM(**rim_kwargs).to(device)
    x = torch.randn(cfg["steps"], cfg["batch"], cfg["input_size"], device=device)
    steps = cfg["steps"]
    lengths = torch.randint(steps // 2, steps + 1, (cfg["batch"],))
    lengths[0] = steps  # the padded batch's maximal length
    runs = {  # label: (model, input); the padded RIM first, the LSTM last
        "RIM (ours)": (rim, x),
        "RIM packed": (rim, pack_padded_sequence(x, lengths, enforce_sorted=False)),
        "RIM (per-unit loop)": (ReferenceRIM(rim).to(device), x),
        f"nn.LSTM({units * hidden})": (nn.LSTM(cfg["input_size"], units * hidden).to(device),
                                       x),
    }
    rows = []
    for label, (model, inputs) in runs.items():
        model.train()
        times = time_fwd_bwd(model, inputs, warmup, repeats)
        rows.append(dict(config=name, device=device, model=label,
                         median_s=statistics.median(times), min_s=min(times),
                         repeats=repeats, **cfg))
    lstm, padded = rows[-1]["median_s"], rows[0]["median_s"]
    for row in rows:
        row["ratio_to_lstm"] = row["median_s"] / lstm
    rows[1]["ratio_to_padded"] = rows[1]["median_s"] / padded
    rows[1]["mean_length"] = float(lengths.float().mean())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--devices", nargs="+", default=None,
                        help="default: cpu, plus cuda when available")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, default=Path("results/benchmarks/rim_speed.json"))
    args = parser.parse_args()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for device in devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            parser.error(f"--devices: {device!r} requested but CUDA is not available")

    rows = []
    print(f"{'config':15} {'device':6} {'model':22} {'median ms':>10} {'min ms':>9} "
          f"{'x LSTM':>7} {'x padded':>9}")
    for device in devices:
        for name in args.configs:
            for row in bench(name, CONFIGS[name], device, args.warmup, args.repeats):
                rows.append(row)
                padded = (f" {row['ratio_to_padded']:9.2f}" if "ratio_to_padded" in row
                          else "")
                print(f"{row['config']:15} {row['device']:6} {row['model']:22} "
                      f"{row['median_s'] * 1e3:10.1f} {row['min_s'] * 1e3:9.1f} "
                      f"{row['ratio_to_lstm']:7.2f}{padded}", flush=True)

    report = dict(torch=torch.__version__, threads=torch.get_num_threads(),
                  machine=platform.machine(), processor=platform.processor(),
                  cuda=torch.cuda.get_device_name() if "cuda" in devices else None, rows=rows)
    write_report(report, args.json)


if __name__ == "__main__":
    main()
