"""The copying task: the generator's layout, the trainable, the study."""

import numpy as np
import pandas as pd
import pytest

from rim_rllib.copying_data import (BLANK, MARKER, NUM_RECALL, copying_batch,
                                    sequence_length)
from analysis.tables import build_table
from rim_rllib.tune.copying import CopyingTrainable, phases
from rim_rllib.tune.results import read_results
from rim_rllib.tune.study import StudySpec, run_study
from rim_rllib.tune.tasks import grid_variants

SMALL_RIM = dict(hidden_size=8, input_key_size=8, input_query_size=8, input_value_size=8,
                 comm_key_size=8, comm_query_size=8, comm_value_size=8, num_comm_heads=1)


def config(**overrides):
    return dict(SMALL_RIM, num_units=4, k=2, dormant=5, eval_dormants=[10, 20],
                train_sequences=256, eval_sequences=64, batch_size=32, lr=3e-3,
                seed=0) | overrides


def test_sequences_have_the_reference_layout():
    x, y = copying_batch(7, dormant=5, rng=np.random.default_rng(0))
    assert x.shape == y.shape == (7, 5 + 20) == (7, sequence_length(5))
    data = x[:, :NUM_RECALL]
    assert ((data >= 1) & (data <= 8)).all()
    assert (x[:, NUM_RECALL:NUM_RECALL + 4] == BLANK).all()          # T - 1 blanks
    assert (x[:, NUM_RECALL + 4] == MARKER).all()                      # the marker
    assert (x[:, -NUM_RECALL:] == BLANK).all()                         # 10 blanks
    assert (y[:, :5 + NUM_RECALL] == BLANK).all()                      # T + 10 blanks
    assert np.array_equal(y[:, -NUM_RECALL:], data)                    # then the symbols
    assert list(phases(5)) == ["storage"] * 10 + ["dormant"] * 4 + ["marker"] + ["recall"] * 10


def test_sequences_are_reproducible_per_seed():
    a = copying_batch(50, 3, np.random.default_rng(1))
    b = copying_batch(50, 3, np.random.default_rng(1))
    c = copying_batch(50, 3, np.random.default_rng(2))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("n,dormant,message", [
    (0, 5, r"n must be a positive int \(sequences\), got 0"),
    (3, 0, r"dormant must be an int >= 1 .* got 0"),
    (3, 2.5, r"dormant must be an int >= 1 .* got 2.5"),
])
def test_bad_lengths_are_named(n, dormant, message):
    with pytest.raises(ValueError, match=message):
        copying_batch(n, dormant, np.random.default_rng(0))


def test_bad_config_is_named():
    with pytest.raises(ValueError, match=r"config\['dormant'\] must be a positive int, got 0"):
        CopyingTrainable.resolve_config({"dormant": 0})
    with pytest.raises(ValueError, match=r"config\['eval_dormants'\] must be a list of "
                       r"dormant lengths >= 1, got \[20, -1\]"):
        CopyingTrainable.resolve_config({"eval_dormants": [20, -1]})
    with pytest.raises(ValueError, match=r"unknown copying trainable config keys \['dorm'\]"):
        CopyingTrainable.resolve_config({"dorm": 3})


@pytest.mark.parametrize("model", ["rim", "lstm"])
def test_one_epoch_reports_every_length(model):
    trainable = CopyingTrainable(config=config(model=model, seed=[0, 1], epochs=1))
    result = trainable.train()
    for dormant in (5, 10, 20):
        for name in ("recall_ce", "recall_accuracy", "sequence_accuracy"):
            assert f"{name}_{dormant}" in result and f"m1/{name}_{dormant}" in result
            assert np.isfinite(result[f"{name}_{dormant}"])
        assert 0 <= result[f"sequence_accuracy_{dormant}"] <= result[
            f"recall_accuracy_{dormant}"] <= 1
    assert result["recall_accuracy"] == result["recall_accuracy_5"]
    assert result["recall_ce_5"] > 0 and result["samples_per_s"] > 0
    trainable.stop()


def test_learns_a_short_copy():
    """Dormant length 5: an LSTM leaves the copying plateau (recall at chance, 1/8, and
    cross-entropy ln 8 = 2.08 on the recall steps) within seconds of training."""
    trainable = CopyingTrainable(config=config(model="lstm", hidden_size=32,
                                               train_sequences=4096, eval_sequences=256,
                                               eval_dormants=[], batch_size=16, lr=1e-2,
                                               lr_schedule="cosine", epochs=12))
    results = [trainable.train() for _ in range(12)]
    assert results[0]["recall_ce_5"] > 2.0 and results[0]["recall_accuracy"] < 0.15
    assert results[-1]["recall_ce_5"] < 1.9 and results[-1]["recall_accuracy"] > 0.2
    trainable.stop()


def test_checkpoint_restore_continues_where_it_stopped(tmp_path):
    cfg = config(seed=[0, 1], epochs=3, lr_schedule="cosine")
    trainable = CopyingTrainable(config=cfg)
    trainable.train()
    checkpoint = trainable.save(str(tmp_path / "ckpt"))
    expected = trainable.train()
    restored = CopyingTrainable(config=cfg)
    restored.restore(checkpoint)
    resumed = restored.train()
    for key in ("train_loss", "m0/recall_ce_5", "m1/recall_accuracy_5", "lr"):
        assert resumed[key] == expected[key], key


def test_rim_trials_record_activations_by_phase():
    trainable = CopyingTrainable(config=config(k=[1, 3], epochs=1, eval_dormants=[]))
    trainable.train()
    counts = trainable.activation_counts(5)
    phase = counts[counts["condition"] == "phase"]
    assert set(phase["value"]) == {"storage", "dormant", "marker", "recall"}
    assert set(counts["Ka"]) == {1, 3}
    total = counts[counts["condition"] == "all"].groupby("member")["active"].sum()
    steps = 64 * sequence_length(5)
    assert list(total) == [1 * steps, 3 * steps]  # Ka units active at every step


def test_a_copying_study_writes_every_metric_and_length(tmp_path, ray_session, capsys):
    # With the LSTMs as wide as each Ka's active units (--matched-lstm) beside the Kt one.
    variants = grid_variants("copying", [4], ["lstm"], {4: [1, 3]}, matched_lstm=True)
    spec = StudySpec(name="copy", task="copying", trainable=CopyingTrainable,
                     base_config=config(train_sequences=128, eval_sequences=32),
                     variants=variants, seeds=[0, 1], iterations=2,
                     metric="recall_accuracy", pack="sweep")
    path = run_study(spec, storage=str(tmp_path))
    df = read_results(path)
    final = df[df["final"]]
    task_metrics = {"recall_ce", "recall_accuracy", "sequence_accuracy"}
    collapse = {"usage_entropy", "switch_rate", "distinct_sets", "min_unit_rate",
                "max_unit_rate"}
    training = {"train_loss", "train_accuracy", "samples_per_s"}
    assert set(final["metric"]) == task_metrics | collapse | training
    final = final[final["metric"].isin(task_metrics)]
    assert len(final) == 10 * 3 * 3  # models (2 RIMs, 3 LSTMs, 2 seeds) x lengths x metrics
    assert sorted(final["eval_on"].unique(), key=int) == ["5", "10", "20"]
    assert set(final["train_on"]) == {"5"} and set(final["task"]) == {"copying"}
    assert sorted(final["Ka"].dropna().unique()) == [1, 3]
    table = build_table(df)  # recall accuracy by default, in %, and collapse for RIMs
    assert list(table.columns) == ["model", "cell", "Kt", "Ka", "5*", "10", "20",
                                   "switch rate", "usage entropy"]
    lstm = table[table["model"] == "lstm"]
    assert list(lstm["Kt"]) == [1, 3, 4] and set(lstm["switch rate"]) == {"–"}
    assert len(table) == 5
    ce = build_table(df, "recall_ce")
    assert ce.loc[0, "5*"] != table.loc[0, "5*"]
    with pytest.raises(ValueError, match=r"--metric must be one of"):
        build_table(df, "accuracy")
    # The copying evaluator gives a trial's own numbers back from its last checkpoint, and
    # evaluates at a length the trial never saw.
    from rim_rllib.tune.evaluate_copying import main as evaluate_main
    rims = final[(final["model"] == "rim") & (final["metric"] == "recall_accuracy")]
    trial = next(p for p in (tmp_path / "copy").iterdir()
                 if rims["trial_id"].iloc[0] in p.name)
    capsys.readouterr()
    assert evaluate_main([str(max(trial.glob("checkpoint_*"))), "--dormants", "10", "40",
                          "--out", str(tmp_path / "evaluated")]) == 0
    assert "| 5*" in capsys.readouterr().out
    evaluated = pd.read_csv(tmp_path / "evaluated" / "recall.csv")
    assert sorted(evaluated["dormant"].unique()) == [5, 10, 40]
    reported = rims.set_index(["Ka", "seed", "eval_on"])["value"] * 100
    for row in evaluated[evaluated["dormant"].isin([5, 10])].itertuples():
        assert row.recall_accuracy == pytest.approx(
            reported[(row.Ka, row.seed, str(row.dormant))], abs=1e-3)
    assert evaluate_main([str(trial)]) == 2
    assert "is not a copying trial checkpoint" in capsys.readouterr().err
