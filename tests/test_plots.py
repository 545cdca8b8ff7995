"""What the plots draw: intervals inside the metric's range, no interval for one seed."""

import numpy as np
import pytest
import pandas as pd

from analysis.plots import _clipped, _title, plot_learning_curves, plot_transfer


def results(values_by_model):
    rows = []
    for (model, ka), values in values_by_model.items():
        for seed, value in enumerate(values):
            for iteration in (1, 2):
                rows.append(dict(study="s", task="mnist", model=model, cell="lstm", Kt=6,
                                 Ka=ka, seed=seed, train_on="14", eval_on="14",
                                 metric="accuracy", value=value * iteration / 2,
                                 iteration=iteration, budget=float(iteration),
                                 budget_unit="epoch", final=iteration == 2))
    return pd.DataFrame(rows)


def test_intervals_stay_inside_the_metric_range():
    low, high = _clipped("accuracy", np.array([98.0, 3.0]), np.array([10.0, 10.0]))
    assert high.tolist() == [100.0, 13.0] and low.tolist() == [88.0, 0.0]
    low, high = _clipped("recall_ce", np.array([0.5]), np.array([2.0]))
    assert (low.tolist(), high.tolist()) == ([0.0], [2.5])  # no upper bound
    low, high = _clipped("accuracy", np.array([50.0]), np.array([np.nan]))  # one seed
    assert (low.tolist(), high.tolist()) == ([50.0], [50.0])


def test_titles_say_the_seeds_and_when_there_is_no_interval():
    df = results({("rim", 4): [0.9, 0.5, 0.7]})
    assert _title(df, pd.Series([3])) == "s (mnist): mean of 3 seeds per model, 95% CI"
    assert _title(df, pd.Series([1, 3])).endswith("1-3 seeds per model, 95% CI; one seed: "
                                                  "no interval")


def test_plots_draw_from_hand_made_results(tmp_path):
    df = results({("rim", 4): [0.99, 0.2], ("lstm", None): [0.6]})
    plot_transfer(df, tmp_path / "transfer.png")
    plot_learning_curves(df, tmp_path / "curves.png")
    assert (tmp_path / "transfer.png").stat().st_size > 5000
    assert (tmp_path / "curves.png").stat().st_size > 5000


def test_improvement_plot_draws_the_verdicts(tmp_path):
    from analysis.plots import plot_improvement
    df = results({("rim", 4): [0.99, 0.9, 0.95], ("lstm", None): [0.6, 0.5, 0.55]})
    df.loc[df["model"] == "lstm", "cell"] = None
    plot_improvement(df, tmp_path / "improvement.png")
    assert (tmp_path / "improvement.png").stat().st_size > 5000
    lonely = results({("rim", 4): [0.99, 0.9], ("lstm", None): [0.6]})
    lonely.loc[lonely["model"] == "lstm", "cell"] = None
    with pytest.raises(ValueError, match="2 seeds"):
        plot_improvement(lonely, tmp_path / "none.png")
