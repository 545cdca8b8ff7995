"""What makes each RIM unit activate: activation rates by condition, from the activation
counts a study's RIM trials wrote (``activations.parquet`` in each trial directory).

    python -m analysis.activations results/ka_sweep-minigrid-doorkey-cpu

For every yes/no condition (MiniGrid: an object type in view, carrying a key, an open door
in view; MNIST: the pixel being on) the association of a unit with it is its activation
rate when the condition holds minus its rate when it does not, per trained model (Ka,
seed, trial and pack member: unit 2 of one seed and unit 2 of another are unrelated
units), pooled over evaluation environments. Draws ``activations.png`` (a heatmap of that
difference: a row per model, a column per condition and unit) and, for MNIST,
``activation_positions.png`` (each unit's rate by pixel position), and prints the
strongest associations.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.cli import results_arguments  # noqa: E402
from analysis.tables import eval_order  # noqa: E402
from rim_rllib.tune.activations import ACTIVATIONS_FILE  # noqa: E402

MIN_STEPS = 20  # fewer steps on either side of a condition: no association reported
#: What names one trained model in the counts (``member``: packed sequence trials only).
MODEL_KEYS = ("Ka", "seed", "trial_id", "member")


def load_counts(study_dir: Path) -> pd.DataFrame:
    files = sorted(study_dir.rglob(ACTIVATIONS_FILE))
    if not files:
        raise FileNotFoundError(f"no {ACTIVATIONS_FILE} under {study_dir} (only RIM trials "
                                "of a finished study write them)")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def model_keys(counts: pd.DataFrame) -> list[str]:
    return [key for key in MODEL_KEYS if key in counts.columns]


def associations(counts: pd.DataFrame) -> pd.DataFrame:
    """Per model (:data:`MODEL_KEYS`), unit and yes/no condition: rate when true, when
    false, their difference and the steps behind each, pooled over evaluation
    environments."""
    binary = counts[counts["value"].isin(["True", "False"])]
    pooled = binary.groupby([*model_keys(counts), "unit", "condition", "value"],
                            dropna=False)[["steps", "active"]].sum()
    wide = pooled.unstack("value")
    wide = wide[(wide[("steps", "True")] >= MIN_STEPS) & (wide[("steps", "False")] >= MIN_STEPS)]
    rate_true = wide[("active", "True")] / wide[("steps", "True")]
    rate_false = wide[("active", "False")] / wide[("steps", "False")]
    out = pd.DataFrame({"rate_if_true": rate_true, "rate_if_false": rate_false,
                        "difference": rate_true - rate_false,
                        "steps_true": wide[("steps", "True")],
                        "steps_false": wide[("steps", "False")]}).reset_index()
    return out.sort_values("difference", key=np.abs, ascending=False, ignore_index=True)


def model_label(table: pd.DataFrame) -> pd.Series:
    """``Ka=2 seed 1`` per row, prefixed by the trial id where one Ka and seed has several
    trials (a study of cures)."""
    label = ("Ka=" + table["Ka"].astype(int).astype(str) + " seed "
             + table["seed"].astype(int).astype(str))
    if table.groupby(["Ka", "seed"])["trial_id"].nunique().max() > 1:
        label = table["trial_id"].astype(str) + " " + label
    return label


def plot_associations(table: pd.DataFrame, path: Path) -> None:
    """A row per model, a column per condition and unit."""
    grid = table.assign(model=model_label(table)).pivot_table(
        index="model", columns=["condition", "unit"], values="difference")
    grid = grid.loc[sorted(grid.index, key=eval_order)]
    fig, ax = plt.subplots(figsize=(0.7 * grid.shape[1] + 3, 0.35 * grid.shape[0] + 2))
    image = ax.imshow(grid.values, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [f"{c}: unit {u}" for c, u in grid.columns],
                  rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=7)
    for (i, j), value in np.ndenumerate(grid.values):
        if not np.isnan(value):
            ax.text(j, i, f"{value:+.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=ax, label="activation rate if true − if false")
    ax.set_title("What makes each unit activate")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_positions(counts: pd.DataFrame, path: Path) -> None:
    """A row of units per model."""
    positions = counts[counts["condition"] == "position"].astype({"value": int})
    pooled = positions.groupby([*model_keys(counts), "unit", "value"], dropna=False)[
        ["steps", "active"]].sum()
    rates = (pooled["active"] / pooled["steps"]).rename("rate").reset_index()
    rates["model"] = model_label(rates)
    size = int(np.sqrt(rates["value"].max() + 1))
    models = sorted(rates["model"].unique(), key=eval_order)
    units = sorted(rates["unit"].unique())
    fig, axes = plt.subplots(len(models), len(units), squeeze=False,
                             figsize=(1.6 * len(units) + 1, 1.6 * len(models) + 0.6))
    for (i, model), (j, unit) in ((a, b) for a in enumerate(models)
                                  for b in enumerate(units)):
        cell = rates[(rates["model"] == model) & (rates["unit"] == unit)]
        image = np.full(size * size, np.nan)
        image[cell["value"].to_numpy()] = cell["rate"].to_numpy()
        ax = axes[i, j]
        shown = ax.imshow(image.reshape(size, size), vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{model} unit {unit}", fontsize=7)
        if i == len(models) - 1:
            ax.set_xlabel("pixel column", fontsize=7)
        if j == 0:
            ax.set_ylabel("pixel row", fontsize=7)
    fig.suptitle(f"Each unit's activation rate by the pixel being read ({size}x{size} "
                 "images, read row by row)", fontsize=9)
    fig.tight_layout()
    fig.colorbar(shown, ax=axes, shrink=0.8, label="activation rate")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    location, out = results_arguments(__doc__, "the PNGs", argv)
    study_dir = Path(location)
    if not study_dir.exists():  # its parent could be any folder, even /, to search
        print(f"analysis.activations: no study directory or results file at {location}",
              file=sys.stderr)
        return 2
    study_dir = study_dir if study_dir.is_dir() else study_dir.parent
    try:
        counts = load_counts(study_dir)
    except FileNotFoundError as err:
        print(f"analysis.activations: {err}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    table = associations(counts)
    plot_associations(table, out / "activations.png")
    written = [out / "activations.png"]
    if (counts["condition"] == "position").any():
        plot_positions(counts, out / "activation_positions.png")
        written.append(out / "activation_positions.png")
    overall = counts[counts["condition"] == "all"].groupby(
        [*model_keys(counts), "unit"], dropna=False)[["steps", "active"]].sum()
    print("overall activation rate per unit, per model:")
    print((overall["active"] / overall["steps"]).unstack("unit").round(3).to_markdown())
    print("\nstrongest associations (rate if true − rate if false):")
    print(table.head(15).round(3).to_markdown(index=False))
    print("\nwrote " + " and ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
