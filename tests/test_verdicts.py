"""The verdict statistics: probability of improvement over the LSTM and interquartile means,
with stratified-bootstrap intervals, on hand-made results whose answers are known."""

import numpy as np
import pandas as pd
import pytest
from rliable import metrics

from analysis.tables import (interquartile_means, study_tables, verdict_tables, verdicts,
                             write_table)
from rim_rllib.stats import _improvement, interquartile_mean, probability_of_improvement


def results(values: dict, metric: str = "accuracy", evals=("14", "24")) -> pd.DataFrame:
    """Final rows of ``{(model, Kt, Ka): per-seed values}``, the same at every eval but
    shifted by the eval's index."""
    rows = []
    for (model, kt, ka), per_seed in values.items():
        for seed, value in enumerate(per_seed):
            for shift, eval_on in enumerate(evals):
                rows.append(dict(model=model, cell="lstm" if model == "rim" else None, Kt=kt,
                                 Ka=ka, seed=seed, train_on=evals[0], eval_on=eval_on,
                                 metric=metric, value=value - 0.01 * shift, final=True))
    rows.append(dict(rows[0], final=False, value=-5.0))  # a learning-curve row: ignored
    return pd.DataFrame(rows)


def test_closed_form_equals_rliables_probability_of_improvement():
    rng = np.random.default_rng(0)
    for n, m in ((3, 3), (5, 2), (10, 10)):
        x = rng.integers(0, 4, (n, 1)).astype(float)  # ties included
        y = rng.integers(0, 4, (m, 1)).astype(float)
        assert _improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))


def test_always_better_is_one_and_identical_is_one_half():
    p, low, high = probability_of_improvement([0.8, 0.9, 0.95], [0.1, 0.2, 0.3])
    assert (p, low, high) == (1.0, 1.0, 1.0)
    p, low, high = probability_of_improvement([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert p == 0.5 and low < 0.5 < high  # inconclusive: the interval holds 0.5
    p, _, _ = probability_of_improvement([0.1, 0.2, 0.3], [0.8, 0.9, 0.95])
    assert p == 0.0


def test_bootstrap_intervals_are_reproducible_and_leave_numpy_alone():
    x, y = [0.1, 0.5, 0.4, 0.9], [0.3, 0.2, 0.6, 0.35]
    np.random.seed(123)
    expected_draw = np.random.rand()
    np.random.seed(123)
    first = probability_of_improvement(x, y, seed=7)
    assert np.random.rand() == expected_draw  # the global generator is put back
    assert probability_of_improvement(x, y, seed=7) == first
    assert first[1] <= first[0] <= first[2]


def test_interquartile_mean_trims_the_outer_quarters():
    iqm, low, high = interquartile_mean([0.0, 0.4, 0.6, 1.0])
    assert iqm == pytest.approx(0.5)
    assert 0.0 <= low <= iqm <= high <= 1.0
    with pytest.raises(ValueError, match="at least 2 runs"):
        interquartile_mean([0.3])


def test_verdicts_against_both_baselines():
    data = results({("rim", 6, 4): [0.8, 0.9, 0.85], ("rim", 6, 2): [0.3, 0.35, 0.4],
                    ("lstm", 6, None): [0.5, 0.6, 0.55],
                    ("lstm", 4, None): [0.95, 0.96, 0.97]})
    v = verdicts(data).set_index(["Ka", "baseline", "eval_on"])
    assert v.loc[(4, "lstm", "14"), "p_improvement"] == 1.0
    assert v.loc[(4, "lstm", "14"), ["low", "high"]].tolist() == [1.0, 1.0]
    assert v.loc[(2, "lstm", "24"), "p_improvement"] == 0.0
    # the width-matched LSTM (hidden Ka*H, its row has Kt = Ka) beats Ka=4 everywhere
    assert v.loc[(4, "matched lstm", "24"), "p_improvement"] == 0.0
    # no LSTM of Kt=2 in the study: Ka=2 gets no matched verdict
    assert (2, "matched lstm", "14") not in v.index
    assert (v["n"] == 3).all() and (v["n_baseline"] == 3).all()
    tables = verdict_tables(verdicts(data))
    assert list(tables) == ["P(RIM > LSTM)", "P(RIM > width-matched LSTM)"]
    table = tables["P(RIM > LSTM)"]
    assert list(table.columns) == ["model", "cell", "Kt", "Ka", "14*", "24"]
    assert table.iloc[0].tolist() == ["rim", "lstm", 6, "4", "1.00 [1.00, 1.00]",
                                      "1.00 [1.00, 1.00]"]


def test_lower_is_better_metrics_flip_the_verdict():
    data = results({("rim", 6, 4): [1.0, 1.2, 1.1], ("lstm", 6, None): [3.0, 2.5, 2.8]},
                   metric="recall_ce", evals=("10", "40"))
    assert (verdicts(data)["p_improvement"] == 1.0).all()


def test_fewer_than_two_seeds_say_so_instead_of_a_number():
    data = results({("rim", 6, 4): [0.8, 0.9], ("lstm", 6, None): [0.5]})
    v = verdicts(data)
    assert v["p_improvement"].isna().all()
    cell = verdict_tables(v)["P(RIM > LSTM)"].iloc[0]["14*"]
    assert cell == "n=1: needs 2 seeds"


def test_minigrid_tables_carry_the_iqm_and_write_their_numbers(tmp_path):
    data = results({("rim", 4, 3): [0.9, 0.1, 0.95, 0.92], ("lstm", 4, None): [0.8, 0.85,
                                                                                 0.7, 0.75]},
                   metric="return", evals=("MiniGrid-Empty-5x5-v0", "MiniGrid-Empty-16x16-v0"))
    iqm = interquartile_means(data).set_index(["model", "eval_on"])
    assert iqm.loc[("rim", "MiniGrid-Empty-5x5-v0"), "iqm"] == pytest.approx(0.91)
    tables, numbers = study_tables(data)
    assert list(tables) == ["mean ± 95% CI (Student t) over seeds",
                            "IQM [95% stratified-bootstrap CI] over seeds", "P(RIM > LSTM)"]
    markdown = write_table(tables, tmp_path, numbers=numbers)
    assert "**P(RIM > LSTM)**" in markdown
    assert (tmp_path / "table.md").read_text() == markdown + "\n"
    written = pd.read_csv(tmp_path / "verdicts.csv")
    assert written["p_improvement"].tolist() == pytest.approx(
        numbers["verdicts"]["p_improvement"].tolist())
    assert (tmp_path / "iqm.csv").is_file()


def test_a_results_page_states_the_run_and_shows_its_tables_and_figures(tmp_path):
    import pyarrow as pa

    from analysis.report import main as report_main
    from rim_rllib.tune.results import SCHEMA, write_parquet_atomic
    data = results({("rim", 6, 4): [0.8, 0.9, 0.85], ("lstm", 6, None): [0.5, 0.6, 0.55]})
    data = data.assign(study="study", trial_id=data["model"], member=data["seed"], task="mnist",
                       hidden_size=8, iteration=1, budget=1.0, budget_unit="epoch",
                       wall_time_s=1.0, status="TERMINATED", config_json="{}",
                       schema_version=2)
    study = tmp_path / "study"
    study.mkdir()
    write_parquet_atomic(pa.Table.from_pandas(data[SCHEMA.names], schema=SCHEMA,
                                              preserve_index=False),
                         study / "results.parquet")
    (study / "experiment_state-2026-12-01_10-00-00.json").write_text("{}")
    page = tmp_path / "docs" / "mnist"
    assert report_main([str(study), "--out", str(page), "--title", "MNIST",
                        "--command", "python studies/ka_sweep.py --seeds 0 1 2",
                        "--commit", "abc1234"]) == 0
    text = (page / "index.md").read_text()
    for expected in ("# MNIST", "`python studies/ka_sweep.py --seeds 0 1 2`", "`abc1234`",
                     "| started | 2026-12-01 10:00 UTC |", "**P(RIM > LSTM)**",
                     "1.00 [1.00, 1.00]", "![improvement](improvement.png)",
                     "- Kt=6, Ka=4: RIM better at 14 (1.00 [1.00, 1.00])"):
        assert expected in text, expected
    assert {p.name for p in page.iterdir()} == {
        "index.md", "improvement.png", "transfer.png", "learning_curves.png"}
    assert report_main([str(tmp_path), "--out", str(page), "--title", "x", "--command", "c",
                        "--commit", "c"]) == 2  # not a study directory
    # make figures: the page again from its study, with what the page says of its run
    (page / "improvement.png").unlink()
    assert report_main(["--refresh", str(page), "--storage", str(tmp_path)]) == 0
    assert (page / "index.md").read_text() == text and (page / "improvement.png").is_file()
    (tmp_path / "hand-written").mkdir()
    (tmp_path / "hand-written" / "index.md").write_text("# Notes\n")
    assert report_main(["--refresh", str(tmp_path / "hand-written"), str(page),
                        "--storage", str(tmp_path)]) == 1  # the other page is still done
    (study / "experiment_state-2026-12-01_12-30-00.json").write_text("{}")  # resumed
    assert report_main(["--refresh", str(page), "--storage", str(tmp_path)]) == 0
    assert ("from the start to the results, in 2 sessions (resumed at 2026-12-01 12:30 UTC; "
            "the pause between them counted)") in (page / "index.md").read_text()
