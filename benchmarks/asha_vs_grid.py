"""Does ASHA find the full grid's best configuration with fewer trial-epochs?

    python benchmarks/asha_vs_grid.py                       # MNIST cpu preset, small grid
    python benchmarks/asha_vs_grid.py --kt 4 6 --epochs 9 --seeds 0 1

Runs the same MNIST grid (Kt x Ka x cell, plus an LSTM per Kt) twice on the local machine,
once to the end and once with ASHA, and compares the best configuration (mean accuracy at
the training size over seeds, at each trial's last epoch) and the trial-epochs spent.
Prints a table and writes JSON.
"""

import argparse
import sys
import time
from pathlib import Path

if not __package__:  # run as a file (python benchmarks/asha_vs_grid.py): import from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import write_report
from rim_rllib.cli import Distinct, HelpFormatter
from rim_rllib.tune.results import read_results
from rim_rllib.tune.study import run_study
from rim_rllib.tune.tasks import grid_variants, task_spec

VARIANT_KEYS = ["model", "cell", "Kt", "Ka"]


def run(name: str, args, asha: bool) -> dict:
    # One model per trial in both runs, so that ASHA stops configurations, not packs.
    spec = task_spec("mnist", "cpu", grid_variants("mnist", args.kt, args.cells), args.seeds,
                     name, asha=asha, pack="none")
    spec.iterations = args.epochs
    spec.base_config |= dict(train_subset=args.train_subset, eval_subset=args.eval_subset)
    start = time.perf_counter()
    df = read_results(run_study(spec, storage=str(args.storage)))
    wall = time.perf_counter() - start
    # Test accuracy at the training size of the trials that ran their whole budget (ASHA
    # decided on the validation split; the collapse metrics share eval_on).
    final = df[df["final"] & (df["eval_on"] == df["train_on"]) & (df["metric"] == "accuracy")]
    means = final.groupby(VARIANT_KEYS, dropna=False)["value"].mean()
    best = [value.item() if hasattr(value, "item") else value for value in means.idxmax()]
    epochs = int(df.groupby("trial_id")["iteration"].max().sum())
    return dict(asha=asha, trials=int(final["trial_id"].nunique()), trial_epochs=epochs,
                best=dict(zip(VARIANT_KEYS, [None if v != v else v for v in best])),
                best_accuracy=float(means.max()), wall_s=wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--kt", type=int, nargs="+", action=Distinct, default=[4])
    parser.add_argument("--cells", nargs="+", action=Distinct, default=["lstm", "gru"])
    parser.add_argument("--seeds", type=int, nargs="+", action=Distinct, default=[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-subset", type=int, default=2000)
    parser.add_argument("--eval-subset", type=int, default=500)
    parser.add_argument("--storage", type=Path, default=Path("results/asha_vs_grid").resolve())
    parser.add_argument("--json", type=Path, default=Path("results/benchmarks/asha_vs_grid.json"))
    args = parser.parse_args()
    rows = [run("full", args, asha=False), run("asha", args, asha=True)]
    print(f"{'run':5} {'trials':>6} {'trial-epochs':>12} {'wall s':>7}  best (accuracy)")
    for row in rows:
        print(f"{'asha' if row['asha'] else 'full':5} {row['trials']:6d} "
              f"{row['trial_epochs']:12d} {row['wall_s']:7.0f}  {row['best']} "
              f"({row['best_accuracy']:.3f})")
    same = rows[0]["best"] == rows[1]["best"]
    ratio = rows[1]["trial_epochs"] / rows[0]["trial_epochs"]
    print(f"same best configuration: {same}; ASHA spent {ratio:.0%} of the trial-epochs")
    write_report(dict(args={k: str(v) for k, v in vars(args).items()}, rows=rows,
                      same_best=same, epoch_ratio=ratio), args.json)


if __name__ == "__main__":
    main()
