"""Evaluate a copying-task trial checkpoint at any dormant lengths, without training.

    python -m rim_rllib.tune.evaluate_copying \\
        results/ka_sweep-copying-cpu/<trial>/checkpoint_000009 --dormants 10 20 40 80 160

The trial's own trainable is rebuilt from its config (``params.json`` beside the
checkpoint) with the dormant lengths asked for (default: the trial's), its checkpoint
restored, and evaluated as the trial evaluates after its last epoch, on the same seeded
test sequences per length: at the trial's own lengths its reported numbers come back.
Prints each model's ``--metric`` (recall accuracy in % by default) per dormant length as a
Markdown table; ``--out DIR`` also writes every metric to ``DIR/recall.csv``.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

from rim_rllib.atomic import atomic_write
from rim_rllib.cli import HelpFormatter, int_at_least
from rim_rllib.tune.copying import CopyingTrainable
from rim_rllib.tune.logs import trainable_logs_in
from rim_rllib.tune.sequence import trial_checkpoint

METRICS = ("recall_accuracy", "sequence_accuracy", "recall_ce")


def load_trainable(checkpoint: str | Path, logdir: str, dormants=None) -> CopyingTrainable:
    """The trial's trainable, restored from ``checkpoint``, evaluating at ``dormants``
    (the trial's training length and evaluation lengths when ``None``); it writes its logs
    (and a RIM's activation counts) into ``logdir``, not the trial's folder."""
    checkpoint, config = trial_checkpoint(checkpoint, "a copying")
    if dormants is not None:
        config["eval_dormants"] = tuple(dormants)
    with trainable_logs_in(logdir):
        trainable = CopyingTrainable(config)
    trainable.load_checkpoint(str(checkpoint))
    return trainable


def recall_table(trainable: CopyingTrainable) -> pd.DataFrame:
    """One row per model of the pack and dormant length: member, model, Kt, Ka, seed,
    ``dormant`` and every metric of :data:`METRICS` (accuracies in %)."""
    metrics = trainable.evaluate_members(last=True)
    rows = []
    for member, spec in enumerate(trainable.members):
        for dormant in trainable.eval_sets:
            rows.append(dict(member=member, model=trainable.cfg["model"],
                             Kt=trainable.cfg["num_units"], Ka=spec["k"], seed=spec["seed"],
                             dormant=dormant, **{
                                 name: metrics[f"{name}_{dormant}"][member]
                                 * (100 if name.endswith("accuracy") else 1)
                                 for name in METRICS}))
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("checkpoint", help="a copying trial's checkpoint_* directory")
    parser.add_argument("--dormants", type=int_at_least(1), nargs="+", default=None,
                        help="dormant lengths (default: the trial's training and "
                             "evaluation lengths)")
    parser.add_argument("--metric", choices=METRICS, default="recall_accuracy",
                        help="what the printed table shows")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write every metric to recall.csv in this folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="evaluate_copying-") as logs:
        try:
            trainable = load_trainable(args.checkpoint, logs, args.dormants)
        except (FileNotFoundError, ValueError) as err:
            print(f"evaluate_copying: {err}", file=sys.stderr)
            return 2
        table = recall_table(trainable)
    train = trainable.cfg["dormant"]
    wide = table.pivot_table(index=["member", "model", "Kt", "Ka", "seed"], columns="dormant",
                             values=args.metric, dropna=False).round(2)
    wide.columns = [f"{d}*" if d == train else str(d) for d in wide.columns]
    print(f"{args.metric} per dormant length, the trial's test sequences "
          f"({trainable.cfg['eval_sequences']} per length):\n")
    print(wide.reset_index().fillna("–").to_markdown(index=False))
    if args.out:  # every metric, one row per model and length
        print("wrote", atomic_write(args.out / "recall.csv",
                                    lambda tmp: table.to_csv(tmp, index=False)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
