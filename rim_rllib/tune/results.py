"""A study's results as one parquet file with a fixed, versioned schema.

Schema version 2, one row per model x evaluation (image size or environment) x reported
iteration; a model is a trial's pack member (a trial may train several models as one pack,
see :func:`rim_rllib.pack`), so ``(trial_id, member)`` names a model:

================  ========  ==============================================================
column            type      meaning
================  ========  ==============================================================
schema_version    int32     2
study             string    the study's name
trial_id          string    Tune's trial id
member            int32     the model's index in its trial's pack (0 when unpacked)
task              string    ``mnist``, ``copying`` or ``minigrid``
model             string    ``rim`` or ``lstm``
cell              string    RIM unit type (``lstm``/``gru``), null for the LSTM baseline
Kt                int32     RIM units (the LSTM baseline's hidden is Kt * hidden_size)
Ka                int32     the model's active RIM units, null for the LSTM baseline
hidden_size       int32     hidden size per unit
seed              int32     the model's seed
train_on          string    training image size (``"14"``), dormant length or environment id
eval_on           string    evaluation image size, dormant length or environment id
metric            string    ``accuracy`` (MNIST test accuracy), ``recall_ce``,
                            ``recall_accuracy``, ``sequence_accuracy`` (copying task, on
                            the 10 recall steps), ``return`` (MiniGrid evaluation return,
                            last iteration) or ``train_return`` (MiniGrid return while
                            training, every iteration); RIMs also ``usage_entropy``,
                            ``switch_rate``, ``distinct_sets``, ``min_unit_rate``,
                            ``max_unit_rate`` (unit collapse, see
                            :mod:`rim_rllib.collapse`): sequence tasks at the training
                            size / length every epoch, MiniGrid in every evaluation
                            environment after the last iteration. Training, every
                            iteration (``eval_on`` = ``train_on``): ``train_loss``,
                            ``train_accuracy`` (sequence tasks: on the training data as
                            it was trained; copying: recall accuracy),
                            ``train_balance_loss`` (with ``balance_loss``),
                            ``val_accuracy`` (MNIST with ``validation``: the held-out
                            training images ASHA reads),
                            ``train_policy_loss``, ``train_vf_loss``, ``train_entropy``
                            (MiniGrid PPO) and ``samples_per_s`` (model-samples per
                            second of the trial's pack, the same in each member's row;
                            MiniGrid: environment frames per second)
value             float64   the metric's value (null, with metric and eval_on null, for a
                            trial that reported nothing: failed or never started)
iteration         int32     Tune's training_iteration of the row
budget            float64   training spent up to this row, in ``budget_unit``
budget_unit       string    ``epoch`` or ``frame``
final             bool      the trial finished its whole budget (TERMINATED) and this is
                            its last reported iteration; tables use these rows
wall_time_s       float64   the trial's training time up to this row
status            string    the trial's Tune status (TERMINATED, ERROR, PENDING, ...), or
                            EARLY_STOPPED for a TERMINATED trial that a scheduler (ASHA)
                            stopped before its budget
config_json       string    the trial's full config, JSON
================  ========  ==============================================================

Version 1 files (no ``member`` column, one model per trial) are read as member 0. The file
is written to a temporary name and renamed, so a crash never leaves half a file, and
exporting again rewrites it from the experiment directory (idempotent).
"""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from ray.tune import ExperimentAnalysis

from rim_rllib.atomic import atomic_write
from rim_rllib.collapse import COLLAPSE_METRICS
from rim_rllib.tune.config import flat_config, pack_members

SCHEMA_VERSION = 2
SCHEMA = pa.schema([
    ("schema_version", pa.int32()), ("study", pa.string()), ("trial_id", pa.string()),
    ("member", pa.int32()),
    ("task", pa.string()), ("model", pa.string()), ("cell", pa.string()),
    ("Kt", pa.int32()), ("Ka", pa.int32()), ("hidden_size", pa.int32()),
    ("seed", pa.int32()), ("train_on", pa.string()), ("eval_on", pa.string()),
    ("metric", pa.string()), ("value", pa.float64()), ("iteration", pa.int32()),
    ("budget", pa.float64()), ("budget_unit", pa.string()), ("final", pa.bool_()),
    ("wall_time_s", pa.float64()), ("status", pa.string()), ("config_json", pa.string()),
])
RESULTS_FILE = "results.parquet"


@dataclass(frozen=True)
class TaskLayout:
    """Where a task's trainable puts things: config keys and reported metric names."""

    model_key: str                       # config key of "rim" / "lstm"
    train_on: Callable[[dict], str]      # the training size / environment of a config
    budget_column: str                   # reported column counting the budget spent
    budget_unit: str
    budget_key: str                      # config key of the full budget, in budget_unit
    # (column pattern, metric): group "member" (absent: every member of the trial) and
    # group "eval" (absent: the training size / environment)
    metrics: tuple[tuple[re.Pattern, str], ...]


def _member_metrics(names) -> tuple:
    """``m<i>/<name>_<eval>`` columns of the sequence trainables, for each name, and their
    per-epoch training metrics."""
    return (tuple((re.compile(rf"^m(?P<member>\d+)/{name}_(?P<eval>\d+)$"), name)
                  for name in names)
            + tuple((re.compile(rf"^m(?P<member>\d+)/{name}$"), name)
                    for name in ("train_loss", "train_accuracy", "train_balance_loss"))
            + _trial_metrics(("samples_per_s",)))


def _trial_metrics(names) -> tuple:
    """Columns reported once per trial, at the training size / environment."""
    return tuple((re.compile(rf"^{name}$"), name) for name in names)


TASKS = {
    "mnist": TaskLayout("model", lambda cfg: str(cfg.get("train_size")), "epoch", "epoch",
                        "epochs", _member_metrics(("accuracy", *COLLAPSE_METRICS))
                        + ((re.compile(r"^m(?P<member>\d+)/accuracy_val$"), "val_accuracy"),)),
    "copying": TaskLayout("model", lambda cfg: str(cfg.get("dormant")), "epoch", "epoch",
                          "epochs",
                          _member_metrics(("recall_ce", "recall_accuracy",
                                           "sequence_accuracy", *COLLAPSE_METRICS))),
    "minigrid": TaskLayout("memory", lambda cfg: cfg.get("env"), "frames", "frame", "frames",
                           ((re.compile(r"^return/(?P<eval>.+)$"), "return"),
                            *_trial_metrics(("train_return", "train_policy_loss",
                                             "train_vf_loss", "train_entropy",
                                             "train_balance_loss", "samples_per_s")),
                            *((re.compile(rf"^{name}/(?P<eval>.+)$"), name)
                              for name in COLLAPSE_METRICS))),
}


def trial_rows(study: str, task: str, trial_id: str, status: str, config: dict,
               progress: pd.DataFrame) -> list[dict]:
    """Rows of one trial's models from its progress (one Tune result per row of
    ``progress``)."""
    layout = TASKS[task]
    cfg = flat_config(config)
    model = cfg.get(layout.model_key, "rim")
    is_rim = model == "rim"
    train_on = layout.train_on(cfg)
    members = pack_members(cfg, layout.model_key)
    base = dict(schema_version=SCHEMA_VERSION, study=study, trial_id=trial_id, task=task,
                model=model, cell=cfg.get("cell", "lstm") if is_rim else None,
                Kt=cfg.get("num_units"), hidden_size=cfg.get("hidden_size"),
                train_on=train_on, budget_unit=layout.budget_unit, status=status,
                config_json=json.dumps(cfg, sort_keys=True, default=str))
    bases = [base | dict(member=i, Ka=m["k"], seed=m["seed"]) for i, m in enumerate(members)]
    if progress.empty:
        return [b | dict(eval_on=None, metric=None, value=None, iteration=None,
                         budget=None, final=False, wall_time_s=None) for b in bases]
    # A retried trial re-reports iterations after its restore: keep the latest of each.
    progress = progress.drop_duplicates("training_iteration", keep="last")
    last = progress["training_iteration"].max()
    # A trial that a scheduler (ASHA) stopped before its budget ends TERMINATED too: it is
    # marked EARLY_STOPPED, and its rows are not final (tables compare full budgets only).
    full = cfg.get(layout.budget_key)
    if (status == "TERMINATED" and full is not None
            and layout.budget_column in progress.columns
            and float(progress.loc[progress["training_iteration"] == last,
                                   layout.budget_column].iloc[0]) < float(full)):
        status = "EARLY_STOPPED"
        bases = [b | dict(status=status) for b in bases]
    matches = [(column, member, match.groupdict().get("eval") or train_on, metric)
               for column in progress.columns for pattern, metric in layout.metrics
               if (match := pattern.match(column))
               for member in ([int(match["member"])] if "member" in match.groupdict()
                              else range(len(bases)))]
    rows = []
    for _, result in progress.iterrows():
        for column, member, eval_on, metric in matches:
            if pd.isna(result[column]):
                continue
            rows.append(bases[member] | dict(
                eval_on=eval_on, metric=metric,
                value=float(result[column]), iteration=int(result["training_iteration"]),
                budget=float(result.get(layout.budget_column, result["training_iteration"])),
                final=bool(result["training_iteration"] == last and status == "TERMINATED"),
                wall_time_s=float(result.get("time_total_s", float("nan")))))
    return rows


def is_uri(location) -> bool:
    return "://" in str(location)


def join_location(location, *parts: str) -> str:
    """``location`` (a local path or a URI) with path ``parts`` appended; a URI's query
    (``s3://bucket/studies?endpoint_override=host:9000``) stays at the end, where a plain
    string join would put the parts inside it."""
    location = str(location)
    if not is_uri(location):
        return os.path.join(location, *parts)
    base, sep, query = location.partition("?")
    return "/".join([base.rstrip("/"), *parts]) + sep + query


def export_results(experiment_path: str | os.PathLike, study: str, task: str,
                   out: str | os.PathLike | None = None) -> str:
    """Read a Tune experiment directory (local or a cloud URI) and write its results
    parquet (default: ``<experiment_path>/results.parquet``). Returns where it is."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    analysis = ExperimentAnalysis(str(experiment_path))
    rows = []
    for trial in analysis.trials:
        rows += trial_rows(study, task, trial.trial_id, trial.status, trial.config,
                           analysis.trial_dataframes.get(trial.trial_id, pd.DataFrame()))
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    out = str(out) if out is not None else join_location(experiment_path, RESULTS_FILE)
    if is_uri(out):
        pq.write_table(table, out)  # an object store publishes the object whole
    else:
        write_parquet_atomic(table, Path(out))
    return out


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_results(location: str | os.PathLike) -> pd.DataFrame:
    """A results parquet (or a local study directory holding one; or a cloud URI),
    checked against the schema."""
    if not is_uri(location):
        path = Path(location)
        location = path / RESULTS_FILE if path.is_dir() else path
        if not location.is_file():
            raise FileNotFoundError(f"no results parquet at {location}")
    elif not str(location).partition("?")[0].endswith(".parquet"):  # a study directory
        location = join_location(location, RESULTS_FILE)
    table = pq.read_table(location)
    if "member" not in table.column_names:  # schema version 1: one model per trial
        table = table.add_column(3, "member", pa.array([0] * len(table), pa.int32()))
    missing = set(SCHEMA.names) - set(table.column_names)
    if missing:
        raise ValueError(f"{location} lacks columns {sorted(missing)} of results schema "
                         f"version {SCHEMA_VERSION}")
    return table.to_pandas(types_mapper={pa.int32(): pd.Int32Dtype()}.get)
