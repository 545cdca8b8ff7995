"""The train-vs-transfer table from a study's results parquet.

    python -m analysis.tables results/ka_sweep-mnist-cpu [--out DIR]
    python -m analysis.tables results/ka_sweep-copying-cpu --metric recall_ce
    python -m analysis.tables results/collapse-mnist-cpu --by balance_loss score_noise

Rows: model / cell / Kt / Ka (and any trial config keys named with ``--by``); columns: the training image size (environment, dormant
length) then every evaluation one; cells: mean ± 95% confidence half-width over seeds
(Student t) of one metric, in % for accuracies. The metric is the task's first of
:data:`TABLE_METRICS` (MNIST accuracy, MiniGrid return, copying recall accuracy) unless
``--metric`` names another. Writes ``table.md`` and ``table.csv`` (numbers of every table
metric, one row per model x eval x metric) next to the results, and prints the Markdown.
"""

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.cli import results_arguments
from rim_rllib.atomic import atomic_write
from rim_rllib.stats import ci95_halfwidth
from rim_rllib.tune.config import flat_config
from rim_rllib.tune.results import read_results

KEYS = ["model", "cell", "Kt", "Ka"]
# The metrics of the train-vs-transfer tables, the default first for each task (MiniGrid's
# train_return is a learning curve). recall_ce is better lower.
TABLE_METRICS = ("accuracy", "return", "recall_accuracy", "recall_ce", "sequence_accuracy")
# Unit-collapse metrics shown beside them for RIM rows, at the training size / length.
COLLAPSE_COLUMNS = {"switch_rate": "switch rate", "usage_entropy": "usage entropy"}


def display_scale(metric: str) -> float:
    """What a metric's values are multiplied by in tables and plots: accuracies in %."""
    return 100.0 if metric.endswith("accuracy") else 1.0


def with_config_keys(results: pd.DataFrame, keys) -> pd.DataFrame:
    """``results`` with a column per trial config key in ``keys``, read from
    ``config_json`` ("–" where a trial's config does not set it)."""
    if not keys:
        return results
    results = results.copy()
    configs = [flat_config(json.loads(text)) if isinstance(text, str) else {}
               for text in results["config_json"]]
    for key in keys:
        if key in results.columns:
            raise ValueError(f"--by {key}: already a results column; name a config key")
        results[key] = [("–" if key not in config else f"{config[key]:.3g}"
                         if isinstance(config[key], float) else str(config[key]))
                        for config in configs]
    return results


def summarise(results: pd.DataFrame, by=()) -> pd.DataFrame:
    """Mean, 95% CI half-width and seed count per model (and config keys ``by``) x
    evaluation, final rows only."""
    final = results[results["final"] & results["value"].notna()
                    & results["metric"].isin([*TABLE_METRICS, *COLLAPSE_COLUMNS])]
    if final.empty:
        raise ValueError("no finished results to tabulate (no row with final=True and a value)")
    final = with_config_keys(final, by)
    grouped = final.groupby(KEYS + list(by) + ["train_on", "eval_on", "metric"],
                            dropna=False)["value"]
    summary = grouped.agg(mean="mean", std="std", n="count").reset_index()
    summary["ci95"] = ci95_halfwidth(summary["std"], summary["n"])
    return summary.drop(columns="std")


def pick_metric(summary: pd.DataFrame, metric: str | None = None) -> str:
    """``metric`` when the summary has it; by default the first of :data:`TABLE_METRICS`
    that it has."""
    present = [m for m in TABLE_METRICS if m in set(summary["metric"])]
    if not present:
        raise ValueError(f"no results of a table metric {list(TABLE_METRICS)}")
    if metric is None:
        return present[0]
    if metric not in present:
        raise ValueError(f"--metric must be one of the results' table metrics {present}, "
                         f"got {metric!r}")
    return metric


def eval_order(value: str) -> tuple:
    """Sort key putting image sizes, environment ids and other labels with numbers in
    natural order (6x6 < 16x16, seed 9 < seed 10)."""
    return tuple(int(part) if part.isdigit() else part
                 for part in re.split(r"(\d+)", value))


def build_table(results: pd.DataFrame, metric: str | None = None, by=(),
                summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """The wide table of ``metric`` (default: the first of :data:`TABLE_METRICS` in the
    results): one row per model (and value of the config keys ``by``), one column per
    evaluation, 'mean ± ci' strings. ``summary``: :func:`summarise` of the results with
    ``by``, when the caller has it already."""
    summary = summarise(results, by) if summary is None else summary
    metric = pick_metric(summary, metric)
    collapse = summary[summary["metric"].isin(COLLAPSE_COLUMNS)
                       & (summary["eval_on"] == summary["train_on"])].copy()
    collapse["eval_on"] = collapse["metric"].map(COLLAPSE_COLUMNS)
    summary = pd.concat([summary[summary["metric"] == metric], collapse], ignore_index=True)
    scale = summary["metric"].map(display_scale)
    mean, ci = summary["mean"] * scale, summary["ci95"] * scale
    summary["cell_text"] = [f"{m:.2f}" if np.isnan(c) else f"{m:.2f} ± {c:.2f}"
                            for m, c in zip(mean, ci)]
    trained = set(summary["train_on"])
    summary["column"] = [f"{e}*" if e in trained else e for e in summary["eval_on"]]
    extra = [c for c in COLLAPSE_COLUMNS.values() if c in set(summary["column"])]
    # The LSTM baseline has no cell type or Ka: give it keys that pivot and sort last.
    summary["cell"] = summary["cell"].fillna("–")
    summary["Ka"] = summary["Ka"].fillna(-1).astype(int)
    table = summary.pivot_table(index=KEYS + list(by), columns="column", values="cell_text",
                                aggfunc="first")
    columns = sorted((c for c in table.columns if c not in extra),
                     key=lambda c: (not c.endswith("*"), eval_order(c.rstrip("*")))) + extra
    table = table[columns].reset_index()
    table = table.sort_values(["model", "Kt", "Ka", *by],
                              ascending=[False, True, False] + [True] * len(by))
    table["Ka"] = table["Ka"].map(lambda k: "–" if k < 0 else str(k))
    table.columns.name = None
    return table.fillna("–").reset_index(drop=True)


def write_table(table: pd.DataFrame, directory: str | os.PathLike,
                summary: pd.DataFrame | None = None) -> str:
    """Write ``table.md`` (and ``table.csv`` of the numbers, when given) atomically;
    return the Markdown."""
    directory = Path(directory)
    markdown = table.to_markdown(index=False, disable_numparse=True)  # keep "12.60"
    _write_text(directory / "table.md", markdown + "\n")
    if summary is not None:
        _write_text(directory / "table.csv", summary.to_csv(index=False))
    return markdown


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def main(argv=None) -> int:
    location, out, metric, by = results_arguments(
        __doc__, "table.md and table.csv", argv,
        metric_help=f"the table's metric, one of {list(TABLE_METRICS)} (default: the "
                    "task's first)")
    try:
        results = read_results(location)
        summary = summarise(results, by)
        table = build_table(results, metric, by, summary)
    except (FileNotFoundError, ValueError) as err:
        print(f"analysis.tables: {err}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    print(write_table(table, out, summary))
    print(f"\nwrote {out / 'table.md'} and {out / 'table.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
