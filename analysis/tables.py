"""The train-vs-transfer table from a study's results parquet.

    python -m analysis.tables results/ka_sweep-mnist-cpu [--out DIR]
    python -m analysis.tables results/ka_sweep-copying-cpu --metric recall_ce
    python -m analysis.tables results/collapse-mnist-cpu --by balance_loss score_noise

Rows: model / cell / Kt / Ka (and any trial config keys named with ``--by``); columns: the
training image size (environment, dormant length) then every evaluation one; cells: mean ±
95% confidence half-width over seeds (Student t) of one metric, in % for accuracies. The
metric is the task's first of :data:`TABLE_METRICS` (MNIST accuracy, MiniGrid return,
copying recall accuracy) unless ``--metric`` names another.

Below it, the verdicts: for every RIM row and evaluation, the probability that the RIM
beats the LSTM baseline of its Kt (and the LSTM as wide as its active units, where the
study has one) — the probability of improvement over the pairs of their seeds, with a 95%
stratified-bootstrap interval (Agarwal et al., NeurIPS 2021; ``rliable``). An interval
that excludes 0.5 says which is better; one that holds 0.5 is inconclusive. For MiniGrid
returns also the interquartile mean with its bootstrap interval. Writes ``table.md``,
``table.csv`` (numbers of every table metric, one row per model x eval x metric),
``verdicts.csv`` (and ``iqm.csv``) next to the results, and prints the Markdown.
"""

import json
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.cli import results_arguments
from rim_rllib.atomic import atomic_write
from rim_rllib.stats import (BOOTSTRAP_REPS, ci95_halfwidth, interquartile_mean,
                             probability_of_improvement)
from rim_rllib.tune.config import flat_config
from rim_rllib.tune.results import read_results

KEYS = ["model", "cell", "Kt", "Ka"]
# The metrics of the train-vs-transfer tables, the default first for each task (MiniGrid's
# train_return is a learning curve). recall_ce is better lower.
TABLE_METRICS = ("accuracy", "return", "recall_accuracy", "recall_ce", "sequence_accuracy")
#: Metrics for which the lower value wins (the verdicts' direction).
LOWER_IS_BETTER = ("recall_ce",)
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


def one_row_per_seed(final: pd.DataFrame, by=()) -> pd.DataFrame:
    """Finished rows (with the ``by`` config keys) reduced to one per model x seed x
    evaluation x metric, so that no seed counts twice: a study resumed after it reported,
    or two results files concatenated, can hold a model's seed more than once. Each
    repeat is folded into the mean of its rows, with a warning saying how many rows were
    folded; the columns kept are the keys and ``value``."""
    keys = KEYS + list(by) + ["train_on", "eval_on", "metric", "seed"]
    reduced = final.groupby(keys, dropna=False, as_index=False)["value"].mean()
    folded = len(final) - len(reduced)
    if folded:
        warnings.warn(f"{folded} of {len(final)} finished results rows repeat a model, seed "
                      "and evaluation already in the results (a study that reported again "
                      "after a resume, or merged results): each seed counts once, its value "
                      "the mean of its rows; rows that differ in a config key belong "
                      "apart, name it with --by", stacklevel=3)
    return reduced


def summarise(results: pd.DataFrame, by=()) -> pd.DataFrame:
    """Mean, 95% CI half-width and seed count per model (and config keys ``by``) x
    evaluation, final rows only, each seed once (:func:`one_row_per_seed`)."""
    final = results[results["final"] & results["value"].notna()
                    & results["metric"].isin([*TABLE_METRICS, *COLLAPSE_COLUMNS])]
    if final.empty:
        raise ValueError("no finished results to tabulate (no row with final=True and a value)")
    final = one_row_per_seed(with_config_keys(final, by), by)
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
    summary["text"] = [f"{m:.2f}" if np.isnan(c) else f"{m:.2f} ± {c:.2f}"
                       for m, c in zip(mean, ci)]
    extra = [c for c in COLLAPSE_COLUMNS.values() if c in set(summary["eval_on"])]
    return _wide(summary, by, extra)


def _seed_scores(final: pd.DataFrame, metric: str, by=()) -> dict:
    """``{(model, cell, Kt, Ka, *by, eval_on): per-seed values}`` of one metric from
    :func:`one_row_per_seed` rows, in seed order."""
    rows = final[final["metric"] == metric].sort_values("seed")
    return {key: group["value"].to_numpy() for key, group in
            rows.groupby(KEYS + list(by) + ["eval_on"], dropna=False)}


def _final_rows(results: pd.DataFrame, metric: str | None, by=()
                ) -> tuple[pd.DataFrame, str, dict]:
    """The finished rows, each seed once (:func:`one_row_per_seed`, with the ``by`` config
    keys), the metric (:func:`pick_metric`) and each evaluation's training key."""
    final = results[results["final"] & results["value"].notna()]
    if final.empty:
        raise ValueError("no finished results to tabulate (no row with final=True and a value)")
    final = one_row_per_seed(with_config_keys(final, by), by)
    return final, pick_metric(final, metric), dict(zip(final["eval_on"], final["train_on"]))


def verdicts(results: pd.DataFrame, metric: str | None = None, by=(),
             reps: int = BOOTSTRAP_REPS) -> pd.DataFrame:
    """How likely each RIM row beats the LSTM, per evaluation: the probability of
    improvement over the pairs of their seeds (the higher metric wins; the lower for
    :data:`LOWER_IS_BETTER`) with its 95% stratified-bootstrap interval
    (:func:`rim_rllib.stats.probability_of_improvement`). Baselines: ``"lstm"``, the LSTM
    of the row's Kt (hidden Kt·H), and ``"matched lstm"``, the LSTM as wide as the row's
    active units (hidden Ka·H; its rows have Kt = Ka), where the study has one. One row per
    RIM row x evaluation x baseline: the keys, ``eval_on``, ``baseline``, ``n`` and
    ``n_baseline`` (seeds), ``p_improvement``, ``low``, ``high`` (NaN where either side has
    fewer than 2 seeds)."""
    final, metric, train_on = _final_rows(results, metric, by)
    scores = _seed_scores(final, metric, by)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    rows = []
    for key, values in scores.items():
        model, cell, kt, ka, *rest = key
        if model != "rim":
            continue
        *extra, eval_on = rest
        baselines = {"lstm": kt} | ({"matched lstm": int(ka)} if ka != kt else {})
        for name, width in baselines.items():
            # The LSTM of that width with the row's --by values, else the only one.
            candidates = {k[4:]: v for k, v in scores.items()
                          if k[0] == "lstm" and k[2] == width and k[-1] == eval_on}
            lstm = candidates.get(tuple(rest), next(iter(candidates.values()))
                                  if len(candidates) == 1 else None)
            if lstm is None:
                continue
            row = dict(zip(KEYS + list(by), (model, cell, kt, ka, *extra)), metric=metric,
                       train_on=train_on[eval_on], eval_on=eval_on, baseline=name,
                       n=len(values), n_baseline=len(lstm))
            estimate = (np.nan, np.nan, np.nan)
            if min(len(values), len(lstm)) >= 2:
                estimate = probability_of_improvement(sign * values, sign * lstm, reps)
            rows.append(row | dict(zip(("p_improvement", "low", "high"), estimate)))
    return pd.DataFrame(rows)


def interquartile_means(results: pd.DataFrame, metric: str | None = None, by=(),
                        reps: int = BOOTSTRAP_REPS) -> pd.DataFrame:
    """The interquartile mean over seeds of every model row x evaluation, with its 95%
    stratified-bootstrap interval (:func:`rim_rllib.stats.interquartile_mean`; NaN with
    fewer than 2 seeds): the keys, ``eval_on``, ``n``, ``iqm``, ``low``, ``high``."""
    final, metric, train_on = _final_rows(results, metric, by)
    rows = []
    for (*keys, eval_on), values in _seed_scores(final, metric, by).items():
        estimate = (interquartile_mean(values, reps) if len(values) >= 2
                    else (np.nan, np.nan, np.nan))
        rows.append(dict(zip(KEYS + list(by), keys), metric=metric,
                         train_on=train_on[eval_on], eval_on=eval_on, n=len(values),
                         **dict(zip(("iqm", "low", "high"), estimate))))
    return pd.DataFrame(rows)


def _interval_text(estimate: float, low: float, high: float, n: int, scale: float = 1.0,
                   digits: int = 2) -> str:
    if np.isnan(estimate):
        return f"n={n}: needs 2 seeds"
    return (f"{estimate * scale:.{digits}f} [{low * scale:.{digits}f}, "
            f"{high * scale:.{digits}f}]")


def _wide(long: pd.DataFrame, by=(), extra=()) -> pd.DataFrame:
    """``long`` rows with a ``text`` column as a table: one row per model (RIMs by Kt and
    Ka down, the LSTM last), one column per evaluation (the training one first, starred,
    then in natural order), then the ``extra`` columns (``eval_on`` labels)."""
    long = long.copy()
    long["column"] = [f"{e}*" if e == t else e for e, t in zip(long["eval_on"],
                                                                long["train_on"])]
    # The LSTM baseline has no cell type or Ka: give it keys that pivot and sort last.
    long["cell"] = long["cell"].fillna("–")
    long["Ka"] = long["Ka"].fillna(-1).astype(int)
    table = long.pivot_table(index=KEYS + list(by), columns="column", values="text",
                             aggfunc="first")
    columns = sorted((c for c in table.columns if c not in extra),
                     key=lambda c: (not c.endswith("*"), eval_order(c.rstrip("*"))))
    table = table[columns + [c for c in extra if c in table.columns]].reset_index()
    table = table.sort_values(["model", "Kt", "Ka", *by],
                              ascending=[False, True, False] + [True] * len(by))
    table["Ka"] = table["Ka"].map(lambda k: "–" if k < 0 else str(k))
    table.columns.name = None
    return table.fillna("–").reset_index(drop=True)


def verdict_tables(verdict: pd.DataFrame, by=()) -> dict[str, pd.DataFrame]:
    """:func:`verdicts` as one wide table per baseline (``"P(RIM > LSTM)"``, and
    ``"P(RIM > width-matched LSTM)"`` where there is one): cells ``p [low, high]``, or
    what is missing where a side has fewer than 2 seeds."""
    tables = {}
    for baseline, title in (("lstm", "P(RIM > LSTM)"),
                            ("matched lstm", "P(RIM > width-matched LSTM)")):
        rows = verdict[verdict["baseline"] == baseline] if len(verdict) else verdict
        if len(rows):
            rows = rows.assign(text=[
                _interval_text(p, lo, hi, min(n, nb)) for p, lo, hi, n, nb in zip(
                    rows["p_improvement"], rows["low"], rows["high"], rows["n"],
                    rows["n_baseline"])])
            tables[title] = _wide(rows, by)
    return tables


def iqm_table(iqms: pd.DataFrame, by=()) -> pd.DataFrame:
    """:func:`interquartile_means` as a wide table, cells ``iqm [low, high]``."""
    scale = display_scale(iqms["metric"].iloc[0])
    return _wide(iqms.assign(text=[_interval_text(m, lo, hi, n, scale) for m, lo, hi, n in
                                   zip(iqms["iqm"], iqms["low"], iqms["high"], iqms["n"])]),
                 by)


def study_tables(results: pd.DataFrame, metric: str | None = None, by=(),
                 summary: pd.DataFrame | None = None
                 ) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Every table of a study, titled: the means (:func:`build_table`), for MiniGrid
    returns the interquartile means (:func:`iqm_table`), and the probabilities of
    improvement over the LSTM baselines (:func:`verdict_tables`); and their numbers,
    ``{"verdicts": verdicts(...)}`` (and ``"iqm"``), for :func:`write_table`."""
    summary = summarise(results, by) if summary is None else summary
    metric = pick_metric(summary, metric)
    tables = {"mean ± 95% CI (Student t) over seeds": build_table(results, metric, by,
                                                                  summary)}
    numbers = {"verdicts": verdicts(results, metric, by)}
    if metric == "return":
        numbers["iqm"] = interquartile_means(results, metric, by)
        tables["IQM [95% stratified-bootstrap CI] over seeds"] = iqm_table(numbers["iqm"],
                                                                           by)
    tables.update(verdict_tables(numbers["verdicts"], by))
    return tables, numbers


def write_table(table: pd.DataFrame | dict, directory: str | os.PathLike,
                summary: pd.DataFrame | None = None,
                numbers: dict[str, pd.DataFrame] | None = None) -> str:
    """Write ``table.md`` (one table, or titled tables as from :func:`study_tables`), and
    ``table.csv`` of the numbers when given (``summary``; with ``numbers``, also
    ``<name>.csv`` of each frame, e.g. ``verdicts.csv``), atomically; return the
    Markdown."""
    directory = Path(directory)
    tables = table if isinstance(table, dict) else {None: table}
    markdown = "\n\n".join(
        (f"**{title}**\n\n" if title else "")
        + t.to_markdown(index=False, disable_numparse=True)  # keep "12.60"
        for title, t in tables.items())
    _write_text(directory / "table.md", markdown + "\n")
    if summary is not None:
        _write_text(directory / "table.csv", summary.to_csv(index=False))
    for name, frame in (numbers or {}).items():
        _write_text(directory / f"{name}.csv", frame.to_csv(index=False))
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
        tables, numbers = study_tables(results, metric, by, summary)
    except (FileNotFoundError, ValueError) as err:
        print(f"analysis.tables: {err}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    print(write_table(tables, out, summary, numbers))
    written = ", ".join(f"{name}.csv" for name in numbers)
    print(f"\nwrote {out / 'table.md'}, {out / 'table.csv'} and {written} there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
