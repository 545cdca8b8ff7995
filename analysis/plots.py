"""Plots of a study's results parquet (PNG, matplotlib).

    python -m analysis.plots results/ka_sweep-mnist-cpu [--out DIR]

Draws ``transfer.png``, bars of the final metric per evaluation (image size or
environment) and model / Ka (mean over seeds, 95% CI whiskers), and
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

from analysis.cli import results_arguments  # noqa: E402
from analysis.tables import eval_order, pick_metric, summarise  # noqa: E402
from rim_rllib.stats import ci95_halfwidth  # noqa: E402
from rim_rllib.tune.results import read_results  # noqa: E402


# Metrics measured during training at the training size / environment.
CURVE_METRICS = ("accuracy", "train_return", "recall_accuracy")


def _label(row) -> str:
    if row["model"] == "lstm":
        return f"LSTM (Kt·H, Kt={row['Kt']})"
    return f"RIM {row['cell']} Kt={row['Kt']} Ka={row['Ka']}"


def _ci(values: pd.Series) -> float:
    """CI half-width for a band; no band (0) for a single seed."""
    return float(np.nan_to_num(ci95_halfwidth(values.std(), values.count())))


def plot_transfer(results: pd.DataFrame, path: Path) -> None:
    """Grouped bars: the final metric per evaluation size/environment, one bar per model
    / Ka (mean over seeds, 95% CI whiskers); the training one is starred."""
    summary = summarise(results)
    summary = summary[summary["metric"] == pick_metric(summary)].copy()
    summary["label"] = summary.apply(_label, axis=1)
    trained = set(summary["train_on"])
    evals = sorted(summary["eval_on"].unique(), key=lambda e: (e not in trained, eval_order(e)))
    labels = sorted(summary["label"].unique())
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(evals) + 2), 4.5))
    for i, label in enumerate(labels):
        group = summary[summary["label"] == label].set_index("eval_on").reindex(evals)
        x = np.arange(len(evals)) + (i - (len(labels) - 1) / 2) * width
        ax.bar(x, group["mean"], width, yerr=group["ci95"].fillna(0), capsize=2,
               label=label)
    names = [f"{e}*" if e in trained else e for e in evals]
    ax.set_xticks(range(len(evals)), [n.replace("MiniGrid-", "") for n in names])
    ax.set_xlabel("evaluated on (* = trained on)")
    ax.set_ylabel(summary["metric"].iloc[0])
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
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
        # Seeds report at the same iterations but slightly different frame counts.
        curve = group.groupby("iteration").agg(budget=("budget", "mean"),
                                               mean=("value", "mean"), ci=("value", _ci))
        ax.plot(curve["budget"], curve["mean"], marker=".", label=label)
        ax.fill_between(curve["budget"], curve["mean"] - curve["ci"],
                        curve["mean"] + curve["ci"], alpha=0.2)
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
