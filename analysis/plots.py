"""Plots of a study's results parquet (PNG, matplotlib).

    python -m analysis.plots results/ka_sweep-mnist-cpu [--out DIR]

Draws ``transfer.png``, the final metric against the evaluation (image size or
environment) with one line per model / Ka (mean over seeds, 95% CI bars), and
``learning_curves.png``, the metric at the training size or environment against the
training budget, one line per model / Ka with a 95% CI band.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from analysis.cli import results_arguments  # noqa: E402
from analysis.tables import summarise  # noqa: E402
from rim_rllib.tune.results import read_results  # noqa: E402


# Metrics measured during training at the training size / environment.
CURVE_METRICS = ("accuracy", "train_return")


def _label(row) -> str:
    if row["model"] == "lstm":
        return f"LSTM (Kt·H, Kt={row['Kt']})"
    return f"RIM {row['cell']} Kt={row['Kt']} Ka={row['Ka']}"


def _ci(values: pd.Series) -> float:
    n = values.count()
    return float(stats.t.ppf(0.975, n - 1) * values.std() / np.sqrt(n)) if n > 1 else 0.0


def plot_transfer(results: pd.DataFrame, path: Path) -> None:
    summary = summarise(results)
    summary["label"] = summary.apply(_label, axis=1)
    evals = sorted(summary["eval_on"].unique(),
                   key=lambda e: (0, int(e)) if e.isdigit() else (1, e))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, group in summary.groupby("label", sort=True):
        group = group.set_index("eval_on").reindex(evals)
        ax.errorbar(range(len(evals)), group["mean"], yerr=group["ci95"].fillna(0),
                    marker="o", capsize=3, label=label)
    ax.set_xticks(range(len(evals)), evals)
    ax.set_xlabel("evaluated on (image size or environment)")
    ax.set_ylabel(summary["metric"].iloc[0])
    ax.set_title(f"train on {', '.join(sorted(summary['train_on'].unique()))}, "
                 "test on larger / other")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_learning_curves(results: pd.DataFrame, path: Path) -> None:
    rows = results[(results["eval_on"] == results["train_on"]) & results["value"].notna()
                   & results["metric"].isin(CURVE_METRICS)]
    if rows.empty:
        raise ValueError("no results at the training size/environment to draw")
    rows = rows.assign(label=rows.apply(_label, axis=1))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, group in rows.groupby("label", sort=True):
        curve = group.groupby("budget")["value"].agg(["mean", _ci])
        ax.plot(curve.index, curve["mean"], marker=".", label=label)
        ax.fill_between(curve.index, curve["mean"] - curve["_ci"],
                        curve["mean"] + curve["_ci"], alpha=0.2)
    ax.set_xlabel(rows["budget_unit"].iloc[0])
    ax.set_ylabel(f"{rows['metric'].iloc[0]} on the training size/environment")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    location, out = results_arguments(__doc__, "the PNGs", argv)
    try:
        results = read_results(location)
        out.mkdir(parents=True, exist_ok=True)
        plot_transfer(results, out / "transfer.png")
        plot_learning_curves(results, out / "learning_curves.png")
    except (FileNotFoundError, ValueError) as err:
        print(f"analysis.plots: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'transfer.png'} and {out / 'learning_curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
