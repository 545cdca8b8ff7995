"""Plots of a study's results parquet (PNG, matplotlib).

    python -m analysis.plots results/ka_sweep-mnist-cpu [--out DIR]

Draws ``transfer.png``, bars of the final metric per evaluation (image size or
environment) and model / Ka (mean over seeds, 95% CI whiskers), and
``learning_curves.png``, the metric at the training size or environment against the
training budget, one line per model / Ka with a 95% CI band, and ``improvement.png``, the
probability that each RIM row beats the LSTM baseline (and the width-matched LSTM, where
the study has one) per evaluation with its 95% stratified-bootstrap interval. Values are
in the tables' units (accuracies in %); intervals are clipped to the metric's range; a
model with one seed is drawn without an interval, and the title says how many seeds each
model has.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.cli import results_arguments  # noqa: E402
from analysis.tables import (display_scale, eval_order, pick_metric,  # noqa: E402
                             summarise, verdicts)
from rim_rllib.stats import ci95_halfwidth  # noqa: E402
from rim_rllib.tune.results import read_results  # noqa: E402


# Metrics measured during training at the training size / environment.
CURVE_METRICS = ("accuracy", "train_return", "recall_accuracy")
METRIC_LABELS = {
    "accuracy": "test accuracy (%)", "recall_accuracy": "recalled symbols right (%)",
    "sequence_accuracy": "sequences all right (%)",
    "recall_ce": "recall cross-entropy (nats; lower is better)",
    "return": "mean episode return", "train_return": "mean episode return in training",
}
# The values a metric can take, in display units (None: unbounded).
METRIC_RANGES = {"accuracy": (0, 100), "recall_accuracy": (0, 100),
                 "sequence_accuracy": (0, 100), "recall_ce": (0, None),
                 "return": (0, 1), "train_return": (0, 1)}


def _label(row) -> str:
    if row["model"] == "lstm":
        return f"LSTM (Kt·H, Kt={row['Kt']})"
    return f"RIM {row['cell']} Kt={row['Kt']} Ka={row['Ka']}"


def _ci(values: pd.Series) -> float:
    """CI half-width for a band; no band (0) for a single seed."""
    return float(np.nan_to_num(ci95_halfwidth(values.std(), values.count())))


def _clipped(metric: str, mean, half) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper interval ends of ``mean ± half`` within the metric's range."""
    low, high = METRIC_RANGES.get(metric, (None, None))
    mean, half = np.asarray(mean, float), np.nan_to_num(np.asarray(half, float))
    return (np.maximum(mean - half, low) if low is not None else mean - half,
            np.minimum(mean + half, high) if high is not None else mean + half)


def _title(results: pd.DataFrame, seeds: pd.Series) -> str:
    """Study, task and seeds per model ("1 seed: no intervals" when so)."""
    low, high = int(seeds.min()), int(seeds.max())
    counted = f"{low}" if low == high else f"{low}-{high}"
    note = "; one seed: no interval" if low == 1 else ""
    study = results["study"].iloc[0] if "study" in results else ""
    return (f"{study} ({results['task'].iloc[0]}): mean of {counted} "
            f"seed{'s' if high > 1 else ''} per model, 95% CI{note}")


def plot_transfer(results: pd.DataFrame, path: Path) -> None:
    """Grouped bars: the final metric per evaluation size/environment, one bar per model
    / Ka (mean over seeds, 95% CI whiskers); the training one is starred."""
    summary = summarise(results)
    metric = pick_metric(summary)
    summary = summary[summary["metric"] == metric].copy()
    summary["label"] = summary.apply(_label, axis=1)
    scale = display_scale(metric)
    trained = set(summary["train_on"])
    evals = sorted(summary["eval_on"].unique(), key=lambda e: (e not in trained, eval_order(e)))
    labels = sorted(summary["label"].unique())
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(evals) + 2), 4.8))
    for i, label in enumerate(labels):
        group = summary[summary["label"] == label].set_index("eval_on").reindex(evals)
        mean = group["mean"].to_numpy() * scale
        low, high = _clipped(metric, mean, group["ci95"].to_numpy() * scale)
        x = np.arange(len(evals)) + (i - (len(labels) - 1) / 2) * width
        ax.bar(x, mean, width, yerr=np.nan_to_num([mean - low, high - mean]), capsize=2,
               label=label)
    names = [f"{e}*" if e in trained else e for e in evals]
    ax.set_xticks(range(len(evals)), [n.replace("MiniGrid-", "") for n in names])
    ax.set_xlabel("evaluated on (* = trained on)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_ylim(*METRIC_RANGES.get(metric, (None, None)))
    ax.set_title(_title(results, summary["n"]), fontsize=9)
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
    metric = rows["metric"].iloc[0]
    scale = display_scale(metric)
    rows = rows.assign(label=rows.apply(_label, axis=1), value=rows["value"] * scale)
    fig, ax = plt.subplots(figsize=(7, 4.8))
    seeds = []
    for label, group in rows.groupby("label", sort=True):
        # Seeds report at the same iterations but slightly different frame counts.
        curve = group.groupby("iteration").agg(budget=("budget", "mean"),
                                               mean=("value", "mean"), ci=("value", _ci),
                                               n=("value", "count"))
        seeds.append(curve["n"].min())
        ax.plot(curve["budget"], curve["mean"], marker=".", label=label)
        low, high = _clipped(metric, curve["mean"], curve["ci"])
        ax.fill_between(curve["budget"], low, high, alpha=0.2)
    unit = rows["budget_unit"].iloc[0]
    if unit == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"training {unit}s")
    where = rows["train_on"].iloc[0]
    ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)}, on {where} (trained on)")
    ax.set_ylim(*METRIC_RANGES.get(metric, (None, None)))
    ax.set_title(_title(results, pd.Series(seeds)), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_improvement(results: pd.DataFrame, path: Path, verdict: pd.DataFrame | None = None
                     ) -> None:
    """The probability that each RIM row beats the LSTM baseline of its Kt (and, where
    the study has one, the width-matched LSTM), per evaluation, with 95%
    stratified-bootstrap intervals (:func:`analysis.tables.verdicts`); a line at 0.5: an
    interval across it is inconclusive. ``verdict``: the verdicts, when computed already."""
    verdict = verdicts(results) if verdict is None else verdict
    verdict = verdict.dropna(subset=["p_improvement"]) if len(verdict) else verdict
    if verdict.empty:
        raise ValueError("no RIM row and LSTM baseline with 2 seeds each to compare")
    baselines = [b for b in ("lstm", "matched lstm") if b in set(verdict["baseline"])]
    evals = sorted(verdict["eval_on"].unique(),
                   key=lambda e: (e not in set(verdict["train_on"]), eval_order(e)))
    rows = sorted({(k[0], k[1], k[2]) for k in zip(verdict["Kt"], verdict["Ka"],
                                                    verdict["cell"])})
    fig, axes = plt.subplots(1, len(baselines), figsize=(max(6.0, 1.6 * len(evals) + 2)
                                                         * len(baselines), 4.8),
                             squeeze=False, sharey=True)
    width = 0.8 / len(rows)
    for ax, baseline in zip(axes[0], baselines):
        subset = verdict[verdict["baseline"] == baseline]
        for i, (kt, ka, cell) in enumerate(rows):
            group = subset[(subset["Kt"] == kt) & (subset["Ka"] == ka)
                           & (subset["cell"] == cell)].set_index("eval_on").reindex(evals)
            p = group["p_improvement"].to_numpy()
            x = np.arange(len(evals)) + (i - (len(rows) - 1) / 2) * width
            ax.errorbar(x, p, yerr=np.nan_to_num([p - group["low"], group["high"] - p]),
                        fmt="o", capsize=3, label=f"RIM {cell} Kt={kt} Ka={int(ka)}")
        ax.axhline(0.5, color="grey", lw=1, ls="--")
        names = [f"{e}*" if e in set(subset["train_on"]) else e for e in evals]
        ax.set_xticks(range(len(evals)), [n.replace("MiniGrid-", "") for n in names])
        ax.set_xlabel("evaluated on (* = trained on)")
        ax.set_ylim(-0.02, 1.02)
        against = "LSTM (Kt·H)" if baseline == "lstm" else "LSTM as wide as the active units"
        ax.set_title(f"P(RIM > {against})", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("probability of improvement (95% bootstrap CI)")
    axes[0][0].legend(fontsize=7)
    seeds = f"{int(verdict['n'].min())}-{int(verdict['n'].max())}"
    study = results["study"].iloc[0] if "study" in results else ""
    fig.suptitle(f"{study}: {verdict['metric'].iloc[0]}, {seeds} seeds per RIM row",
                 fontsize=9)
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
    written = ["transfer.png", "learning_curves.png"]
    try:
        plot_improvement(results, out / "improvement.png")
        written.append("improvement.png")
    except ValueError as err:  # a study without two seeds of an LSTM: no verdicts to draw
        print(f"analysis.plots: no improvement.png: {err}", file=sys.stderr)
    print(f"wrote {', '.join(written)} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
