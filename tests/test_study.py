"""A tiny real Tune sweep through the study runner, its parquet, and the analysis on it."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from analysis.activations import main as activations_main
from analysis.plots import main as plots_main
from analysis.tables import build_table, main as tables_main, summarise
from rim_rllib.tune.activations import count_activations
from rim_rllib.tune.mnist import MnistTrainable
from rim_rllib.tune.results import SCHEMA, export_results, read_results, trial_rows
from rim_rllib.tune.study import StudySpec, run_study

SMALL_RIM = dict(hidden_size=8, input_key_size=8, input_query_size=8, input_value_size=8,
                 comm_key_size=8, comm_query_size=8, comm_value_size=8, num_comm_heads=2)


@pytest.fixture(scope="module")
def study(mnist_dir, tmp_path_factory, ray_session):
    storage = tmp_path_factory.mktemp("studies")
    spec = StudySpec(
        name="tiny", task="mnist", trainable=MnistTrainable,
        base_config=dict(SMALL_RIM, data_dir=str(mnist_dir), train_size=7, eval_sizes=[9, 12],
                         batch_size=64),
        variants=[dict(model="rim", num_units=4, k=2), dict(model="rim", num_units=4, k=4),
                  dict(model="lstm", num_units=4)],
        seeds=[0], iterations=2, metric="accuracy")
    return spec, storage, run_study(spec, storage=str(storage))


def test_sweep_writes_one_row_per_trial_eval_and_iteration(study):
    spec, storage, path = study
    assert path == str(storage / "tiny" / "results.parquet")
    assert pq.read_schema(path).equals(SCHEMA, check_metadata=False)
    everything = read_results(path)
    collapse_metrics = {"usage_entropy", "switch_rate", "distinct_sets", "min_unit_rate",
                        "max_unit_rate"}
    collapse = everything[everything["metric"].isin(collapse_metrics)]
    # RIM trials also report their units' collapse at the training size, every iteration
    assert len(collapse) == 2 * 5 * 2 and set(collapse["eval_on"]) == {"7"}
    assert set(collapse["model"]) == {"rim"}
    # ... and every model its training loss, accuracy and speed, every iteration
    train = everything[everything["metric"].str.startswith("train_")
                       | (everything["metric"] == "samples_per_s")]
    assert set(everything["metric"]) == collapse_metrics | set(train["metric"]) | {"accuracy"}
    assert sorted(train.groupby("metric").size().items()) == [
        ("samples_per_s", 6), ("train_accuracy", 6), ("train_loss", 6)]  # trials x iters
    assert set(train["eval_on"]) == {"7"} and (train["value"] >= 0).all()
    assert train[train["metric"] == "train_accuracy"]["value"].between(0, 1).all()
    assert (train[train["metric"] == "samples_per_s"]["value"] > 0).all()
    df = everything[everything["metric"] == "accuracy"]
    assert len(df) == 3 * 3 * 2  # trials x eval sizes (7, 9, 12) x iterations
    assert (df["status"] == "TERMINATED").all()
    final = df[df["final"]]
    assert len(final) == 9 and (final["iteration"] == 2).all()
    assert sorted(final["eval_on"].unique()) == ["12", "7", "9"]
    assert set(final["train_on"]) == {"7"}
    rim = final[final["model"] == "rim"]
    assert sorted(rim["Ka"].unique()) == [2, 4] and set(rim["cell"]) == {"lstm"}
    lstm = final[final["model"] == "lstm"]
    assert lstm["Ka"].isna().all() and lstm["cell"].isna().all()
    assert df["value"].between(0, 1).all() and (df["wall_time_s"] > 0).all()


def test_export_is_idempotent(study, tmp_path):
    _, storage, path = study
    again = export_results(storage / "tiny", "tiny", "mnist", out=tmp_path / "again.parquet")
    pd.testing.assert_frame_equal(read_results(path), read_results(again))


def test_analysis_commands_on_the_study(study, capsys):
    _, storage, _ = study
    assert tables_main([str(storage / "tiny")]) == 0
    printed = capsys.readouterr().out
    assert "| rim " in printed and "| lstm " in printed and "7*" in printed
    assert "switch rate" in printed and "usage entropy" in printed
    assert (storage / "tiny" / "table.csv").is_file()
    assert plots_main([str(storage / "tiny")]) == 0
    for name in ("transfer.png", "learning_curves.png"):
        assert (storage / "tiny" / name).stat().st_size > 5000
    # Rows split by a trial config key; what the selection diagnosis says of the RIM.
    assert tables_main([str(storage / "tiny"), "--by", "batch_size", "init"]) == 0
    printed = capsys.readouterr().out
    assert "| batch_size   | init   |" in printed and "| 64           | –      |" in printed
    assert tables_main([str(storage / "tiny"), "--by", "Ka"]) == 2
    assert "--by Ka: already a results column" in capsys.readouterr().err
    from analysis.selection import main as selection_main
    assert selection_main([str(storage / "tiny")]) == 0
    selection = pd.read_csv(storage / "tiny" / "selection.csv")
    assert list(selection["Ka"]) == [2]  # Ka=4 of Kt=4 has no selection to explain
    assert selection[["bias_decides", "state_decides"]].stack().between(0, 1).all()


def test_a_trial_checkpoint_evaluates_at_any_size_as_the_trial_did(study, tmp_path, capsys):
    """The MNIST evaluation CLI rebuilds a trial's pack from its last checkpoint and gets
    the trial's own final test accuracies, at the sizes asked for."""
    from rim_rllib.tune.evaluate_mnist import main as evaluate_main
    _, storage, path = study
    final = read_results(path)
    final = final[final["final"] & (final["metric"] == "accuracy") & (final["Ka"] == 2)]
    trial_dir = next(p for p in (storage / "tiny").iterdir() if final["trial_id"].iloc[0]
                     in p.name)
    checkpoint = max(trial_dir.glob("checkpoint_*"))
    out = tmp_path / "evaluated"
    assert evaluate_main([str(checkpoint), "--sizes", "7", "12", "28", "--out",
                          str(out)]) == 0
    printed = capsys.readouterr().out
    assert " 7* |" in printed and "test images (the trial's own)" in printed
    table = pd.read_csv(out / "accuracy.csv")
    assert list(table.columns) == ["member", "model", "Kt", "Ka", "seed", "7*", "12", "28"]
    expected = final.set_index("eval_on")["value"] * 100
    assert table.loc[0, "7*"] == pytest.approx(expected["7"], abs=0.01)
    assert table.loc[0, "12"] == pytest.approx(expected["12"], abs=0.01)
    assert 0 <= table.loc[0, "28"] <= 100
    assert evaluate_main([str(trial_dir)]) == 2
    assert "is not an MNIST trial checkpoint" in capsys.readouterr().err


def test_validation_accuracy_is_exported_beside_test_accuracy():
    """What ASHA ranked (held-out training images) lands in the parquet as val_accuracy at
    the training size; the tables' accuracy rows stay the test set's."""
    progress = pd.DataFrame({"training_iteration": [1, 2], "epoch": [1, 2],
                             "m0/accuracy_7": [0.2, 0.3], "m0/accuracy_val": [0.25, 0.35],
                             "m1/accuracy_7": [0.1, 0.4], "m1/accuracy_val": [0.15, 0.45]})
    config = dict(train_size=7, epochs=2, validation=100,
                  variant=dict(model="rim", num_units=4, k=2), seed=[0, 1])
    rows = pd.DataFrame(trial_rows("s", "mnist", "t1", "TERMINATED", config, progress))
    val = rows[rows["metric"] == "val_accuracy"]
    assert sorted(zip(val["member"], val["iteration"], val["value"])) == [
        (0, 1, 0.25), (0, 2, 0.35), (1, 1, 0.15), (1, 2, 0.45)]
    assert set(val["eval_on"]) == {"7"}
    assert sorted(rows.loc[rows["metric"] == "accuracy", "value"]) == [0.1, 0.2, 0.3, 0.4]


def hand_made_results():
    rows = []
    for seed, (a, b) in enumerate([(0.5, 0.2), (0.7, 0.4)]):
        for eval_on, value in (("14", a), ("24", b)):
            rows.append(dict(model="rim", cell="lstm", Kt=6, Ka=4, seed=seed, train_on="14",
                             eval_on=eval_on, metric="accuracy", value=value, final=True))
    rows.append(dict(model="lstm", cell=None, Kt=6, Ka=None, seed=0, train_on="14",
                     eval_on="14", metric="accuracy", value=0.9, final=True))
    rows.append(dict(model="lstm", cell=None, Kt=6, Ka=None, seed=0, train_on="14",
                     eval_on="14", metric="accuracy", value=0.1, final=False))
    return pd.DataFrame(rows)


def test_table_numbers_on_hand_made_results():
    summary = summarise(hand_made_results()).set_index(["model", "eval_on"])
    # mean of (0.5, 0.7) and t(0.975, 1) * std / sqrt(2) = 12.7062 * 0.1
    assert summary.loc[("rim", "14"), "mean"] == pytest.approx(0.6)
    assert summary.loc[("rim", "14"), "ci95"] == pytest.approx(1.270620, rel=1e-5)
    assert summary.loc[("lstm", "14"), "mean"] == pytest.approx(0.9)  # final rows only
    assert np.isnan(summary.loc[("lstm", "14"), "ci95"])  # one seed: no interval
    table = build_table(hand_made_results())
    assert list(table.columns) == ["model", "cell", "Kt", "Ka", "14*", "24"]
    assert table.iloc[0].tolist() == ["rim", "lstm", 6, "4", "60.00 ± 127.06", "30.00 ± 127.06"]
    assert table.iloc[1].tolist() == ["lstm", "–", 6, "–", "90.00", "–"]


def test_empty_study_spec_is_refused():
    with pytest.raises(ValueError, match="variants is empty"):
        StudySpec(name="x", task="mnist", trainable=MnistTrainable, base_config={},
                  variants=[], seeds=[0], iterations=1, metric="accuracy")


def test_units_of_different_models_are_not_pooled():
    """Unit 0 follows the ink in seed 0's RIM and unit 1 in seed 1's: each association is
    the full 1.0, not half of it as a pool over seeds would give."""
    from analysis.activations import associations
    rows = []
    for seed, ink_unit in ((0, 0), (1, 1)):
        for unit in (0, 1):
            for value, steps in (("True", 30), ("False", 70)):
                follows = (value == "True") == (unit == ink_unit)
                rows.append(dict(condition="pixel on", value=value, unit=unit, steps=steps,
                                 active=steps if follows else 0, member=seed, Ka=1,
                                 seed=seed, trial_id="t0"))
    table = associations(pd.DataFrame(rows)).set_index(["seed", "unit"])["difference"]
    assert table.to_dict() == {(0, 0): 1.0, (0, 1): -1.0, (1, 1): 1.0, (1, 0): -1.0}


def test_rim_trials_record_activations_by_pixel(study, capsys):
    _, storage, _ = study
    files = sorted((storage / "tiny").rglob("activations.parquet"))
    assert len(files) == 2  # the two RIM trials, not the LSTM
    counts = pd.read_parquet(files[0])
    assert set(counts["condition"]) == {"all", "pixel on", "position"}
    positions = counts[counts["condition"] == "position"]
    assert len(positions) == 7 * 7 * 4  # every position x unit at the training size 7
    everything = counts[counts["condition"] == "all"]
    ka = int(counts["Ka"].iloc[0])
    # Exactly Ka units are active at every step.
    assert everything["active"].sum() == ka * everything["steps"].iloc[0]
    assert activations_main([str(storage / "tiny")]) == 0
    assert "strongest associations" in capsys.readouterr().out
    for name in ("activations.png", "activation_positions.png"):
        assert (storage / "tiny" / name).stat().st_size > 5000


def test_count_activations_by_hand():
    masks = np.array([[1, 0], [1, 1], [0, 1], [0, 1]], bool)
    counts = count_activations(masks, {"key in view": np.array([True, True, False, False])})
    rows = {(r.value, r.unit): (r.steps, r.active) for r in counts.itertuples()}
    assert rows == {("True", 0): (2, 2), ("True", 1): (2, 1),
                    ("False", 0): (2, 0), ("False", 1): (2, 2)}


@pytest.fixture(scope="module")
def packed_study(mnist_dir, tmp_path_factory, ray_session):
    storage = tmp_path_factory.mktemp("packed")
    spec = StudySpec(
        name="packed", task="mnist", trainable=MnistTrainable,
        base_config=dict(SMALL_RIM, data_dir=str(mnist_dir), train_size=7, eval_sizes=[9],
                         batch_size=64),
        variants=[dict(model="rim", num_units=4, k=k) for k in (1, 2, 4)]
        + [dict(model="lstm", num_units=4)],
        seeds=[0, 1], iterations=1, metric="accuracy", pack="sweep")
    return spec, storage, run_study(spec, storage=str(storage))


def test_a_packed_sweep_writes_one_row_per_model(packed_study):
    spec, storage, path = packed_study
    assert spec.num_trials == 2 and spec.num_models == 8
    everything = read_results(path)
    speed = everything[everything["metric"] == "samples_per_s"]
    assert len(speed) == 8 and speed.groupby("trial_id")["value"].nunique().eq(1).all()
    assert len(everything[everything["metric"] == "train_loss"]) == 8
    df = everything[everything["metric"] == "accuracy"]
    assert len(df) == 8 * 2  # models x eval sizes (7, 9) x 1 iteration
    assert df["trial_id"].nunique() == 2 and df["final"].all()
    models = df.drop_duplicates(["trial_id", "member"])
    rim = models[models["model"] == "rim"]
    assert sorted(zip(rim["Ka"], rim["seed"])) == [(1, 0), (1, 1), (2, 0), (2, 1),
                                                   (4, 0), (4, 1)]
    assert sorted(rim["member"]) == list(range(6))
    lstm = models[models["model"] == "lstm"]
    assert sorted(lstm["seed"]) == [0, 1] and lstm["Ka"].isna().all()
    summary = summarise(df)
    assert (summary["n"] == 2).all()  # every row a mean over two seeds
    counts = pd.read_parquet(next((storage / "packed").rglob("activations.parquet")))
    assert sorted(counts[["member", "Ka", "seed"]].drop_duplicates().itertuples(
        index=False, name=None)) == [(0, 1, 0), (1, 1, 1), (2, 2, 0), (3, 2, 1), (4, 4, 0),
                                     (5, 4, 1)]


def test_version_1_results_read_as_member_0(study, tmp_path):
    _, _, path = study
    old = pq.read_table(path).drop(["member"])
    pq.write_table(old, tmp_path / "v1.parquet")
    df = read_results(tmp_path / "v1.parquet")
    assert list(df.columns) == SCHEMA.names and (df["member"] == 0).all()


def test_packing_groups_the_grid():
    variants = [dict(model="rim", num_units=4, k=k, cell=c) for c in ("lstm", "gru")
                for k in (1, 2)] + [dict(model="lstm", num_units=4)]
    spec = lambda pack: StudySpec(name="x", task="mnist", trainable=MnistTrainable,
                                  base_config={}, variants=variants, seeds=[0, 1, 2],
                                  iterations=1, metric="accuracy", pack=pack)
    assert spec("none").trial_grid() == (variants, [0, 1, 2])
    assert spec("seeds").trial_grid() == (variants, [[0, 1, 2]])
    assert spec("sweep").trial_grid() == (
        [dict(model="rim", num_units=4, k=[1, 2], cell="lstm"),
         dict(model="rim", num_units=4, k=[1, 2], cell="gru"),
         dict(model="lstm", num_units=4)], [[0, 1, 2]])
    with pytest.raises(ValueError, match=r"pack must be one of \['none', 'seeds', 'sweep'\]"):
        spec("all")


def test_max_pack_splits_the_sweep():
    variants = [dict(model="rim", num_units=6, k=k) for k in range(1, 7)] + [
        dict(model="lstm", num_units=6)]
    spec = StudySpec(name="x", task="mnist", trainable=MnistTrainable, base_config={},
                     variants=variants, seeds=[0, 1, 2], iterations=1, metric="accuracy",
                     pack="sweep", max_pack=9)
    assert spec.trial_grid() == ([dict(model="rim", num_units=6, k=[1, 2, 3]),
                                  dict(model="rim", num_units=6, k=[4, 5, 6]),
                                  dict(model="lstm", num_units=6)], [[0, 1, 2]])
    assert spec.num_trials == 3 and spec.num_models == 21
    seeds_only = StudySpec(name="x", task="mnist", trainable=MnistTrainable, base_config={},
                           variants=variants[:1], seeds=[0, 1, 2], iterations=1,
                           metric="accuracy", pack="seeds", max_pack=2)
    assert seeds_only.trial_grid() == (variants[:1], [[0, 1], [2]])


def test_asha_studies_pack_seeds_by_default():
    from rim_rllib.tune.tasks import study_spec
    default = study_spec("mnist")
    assert (default.pack, default.cpus_per_trial) == ("sweep", 2)
    with_asha = study_spec("mnist", asha=True)
    assert (with_asha.pack, with_asha.cpus_per_trial) == ("seeds", 1)
    assert with_asha.num_trials == 7 and with_asha.num_models == 21


def test_the_paper_preset_packs_the_sweep_on_a_whole_gpu():
    from rim_rllib.tune.tasks import study_spec
    for task in ("mnist", "copying"):
        paper = study_spec(task, "paper")
        assert (paper.pack, paper.gpus_per_trial, paper.num_trials) == ("sweep", 1, 2)
        assert paper.base_config["compile"] is True
        seeds = study_spec(task, "paper", pack="seeds")
        assert (seeds.gpus_per_trial, seeds.num_trials) == (0.25, 7)
    assert study_spec("mnist").gpus_per_trial == 0  # the cpu preset


def test_matched_lstm_baselines_are_as_wide_as_each_kas_active_units():
    from rim_rllib.tune.copying import CopyingTrainable
    from rim_rllib.tune.tasks import grid_variants, study_spec
    plain = study_spec("copying", ks=[1, 3, 6])
    assert [v for v in plain.variants if v["model"] == "lstm"] == [
        dict(model="lstm", num_units=6)]
    matched = study_spec("copying", ks=[1, 3, 6], matched_lstm=True)
    assert matched.variants[:len(plain.variants)] == plain.variants
    lstms = matched.variants[len(plain.variants):]
    assert lstms == [dict(model="lstm", num_units=3), dict(model="lstm", num_units=1)]
    hidden = matched.base_config["hidden_size"]
    for variant in lstms:  # the trainable builds an LSTM of Ka * H
        cfg = CopyingTrainable.resolve_config(dict(matched.base_config, variant=variant,
                                                   seed=0, epochs=1))
        model = CopyingTrainable.build_model(cfg, None, {})
        assert model.memory.hidden_size == variant["num_units"] * hidden
    # Over several Kt, each width once; MiniGrid names the memory.
    widths = [v["num_units"] for v in grid_variants("mnist", [2, 3], ["lstm"],
                                                    matched_lstm=True) if v["model"] == "lstm"]
    assert widths == [2, 3, 1]
    assert grid_variants("minigrid-empty", [2], ["lstm"], matched_lstm=True)[-1] == dict(
        memory="lstm", num_units=1)


def test_the_cpu_preset_gives_the_lstm_baseline_its_own_lr():
    from rim_rllib.tune.config import flat_config
    from rim_rllib.tune.tasks import study_spec
    spec = study_spec("mnist")
    variants, _ = spec.trial_grid()
    lrs = {v["model"]: flat_config(dict(spec.base_config, variant=v))["lr"] for v in variants}
    assert lrs == {"rim": 5e-3, "lstm": 6e-3}
    assert spec.base_config["lr_schedule"] == "cosine" and spec.base_config["compile"]
    paper, _ = study_spec("mnist", preset="paper").trial_grid()
    assert all("lr" not in v for v in paper)  # the reference's one lr for every model


@pytest.mark.parametrize("tool", [tables_main, plots_main, activations_main],
                         ids=["tables", "plots", "activations"])
def test_analysis_tools_refuse_a_missing_study_in_one_line(tool, tmp_path, capsys):
    missing = tmp_path / "no" / "such-study"
    assert tool([str(missing)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(missing) in err
    assert not list(tmp_path.rglob("*.png"))  # nothing written anywhere near it


def test_a_trial_stopped_before_its_budget_is_not_final():
    """ASHA ends the trials it stops as TERMINATED: they are exported as EARLY_STOPPED,
    with no final rows, so tables average full budgets only."""
    from rim_rllib.tune.results import trial_rows
    config = dict(model="rim", num_units=4, k=2, seed=0, train_size=7, epochs=4)
    progress = pd.DataFrame({"training_iteration": [1, 2], "epoch": [1, 2],
                             "m0/accuracy_7": [0.2, 0.3]})
    stopped = trial_rows("s", "mnist", "t0", "TERMINATED", config, progress)
    assert {r["status"] for r in stopped} == {"EARLY_STOPPED"}
    assert not any(r["final"] for r in stopped)
    full = trial_rows("s", "mnist", "t1", "TERMINATED", dict(config, epochs=2), progress)
    assert {r["status"] for r in full} == {"TERMINATED"}
    assert [r["final"] for r in full] == [False, True]


def test_a_trial_reserves_its_helper_actors_cpus(ray_session):
    """A trial that starts actors (RLlib env runners) asks for a placement group: its own
    bundle, then a CPU per actor."""
    from ray import tune

    from rim_rllib.tune.study import _trial_resources
    spec = StudySpec(name="s", task="minigrid", trainable=lambda config: None,
                     base_config={}, variants=[{}], seeds=[0], iterations=1,
                     metric="train_return", helper_cpus=2)
    resources = _trial_resources(spec, address="auto")
    assert isinstance(resources, tune.PlacementGroupFactory)
    assert resources.bundles == [{"CPU": 1}, {"CPU": 1}, {"CPU": 1}]
    spec.helper_cpus = 0
    assert _trial_resources(spec, address="auto") == {"cpu": 1}


def test_storage_uris_keep_their_query_at_the_end():
    """A bucket reached through parameters (an S3 endpoint of one's own) keeps them after
    the study's path, where a string join would put the path inside the query."""
    from rim_rllib.tune.results import join_location
    uri = "s3://bucket/studies?endpoint_override=127.0.0.1:9000&scheme=http"
    assert join_location(uri, "mnist", "results.parquet") == (
        "s3://bucket/studies/mnist/results.parquet?endpoint_override=127.0.0.1:9000&scheme=http")
    assert join_location("s3://bucket/studies/", "mnist") == "s3://bucket/studies/mnist"
    assert join_location("results", "mnist") == str(Path("results") / "mnist")
