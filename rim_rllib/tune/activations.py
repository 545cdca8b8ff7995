"""Which RIM units are active under which conditions, as counts a study keeps per trial.

A trial that records activations writes ``activations.parquet`` into its Tune trial
directory: one row per condition x value x unit, with how many steps had that condition
value (``steps``) and in how many of those the unit was active (``active``). Counts, not
rates, so that trials and seeds add up; ``python -m analysis.activations`` reads them.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from rim_rllib.tune.results import write_parquet_atomic

ACTIVATIONS_FILE = "activations.parquet"


def count_activations(masks: np.ndarray, conditions: dict[str, np.ndarray]) -> pd.DataFrame:
    """``masks`` (N, Kt) bool; ``conditions`` name -> (N,) values (bool, int or str).
    Returns columns condition, value (str), unit, steps, active."""
    masks = np.asarray(masks, dtype=bool)
    rows = []
    for name, values in conditions.items():
        values = np.asarray(values)
        if len(values) != len(masks):
            raise ValueError(f"condition {name!r} has {len(values)} values for "
                             f"{len(masks)} steps")
        for value in np.unique(values):
            selected = masks[values == value]
            for unit, active in enumerate(selected.sum(0)):
                rows.append(dict(condition=name, value=str(value), unit=unit,
                                 steps=len(selected), active=int(active)))
    return pd.DataFrame(rows, columns=["condition", "value", "unit", "steps", "active"])


def write_activations(counts: pd.DataFrame, trial_dir: str | Path, **labels) -> Path:
    """Write ``counts`` with constant ``labels`` columns (trial_id, task, Ka, eval_on...)
    to ``trial_dir/activations.parquet``, atomically."""
    table = pa.Table.from_pandas(counts.assign(**labels), preserve_index=False)
    path = Path(trial_dir) / ACTIVATIONS_FILE
    write_parquet_atomic(table, path)
    return path
