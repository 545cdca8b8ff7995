"""Searches over declared ranges (random, Optuna) through Tune, and MLflow tracking."""

import pytest

from rim_rllib.tune.mnist import MnistTrainable
from rim_rllib.tune.results import read_results
from rim_rllib.tune.study import StudySpec, execute_study
from rim_rllib.tune.tasks import study_spec, with_search

SMALL = dict(input_key_size=8, input_query_size=8, input_value_size=8, comm_key_size=8,
             comm_query_size=8, comm_value_size=8, num_comm_heads=1)


def test_a_search_spec_draws_rim_configs_with_their_seeds_packed():
    spec = with_search(study_spec("mnist"), "random", 5, fixed={"lr": 1e-3})
    assert spec.num_trials == 5 and spec.num_models == 15 and spec.pack == "seeds"
    assert spec.variants == [{"model": "rim", "num_units": 6, "cell": "lstm"}]
    assert "lr" not in spec.search_space and {"k", "hidden_size"} <= set(spec.search_space)
    space = spec.param_space(cpus=1)
    assert space["seed"] == [0, 1, 2] and space["variant"]["k"].upper == 7
    grid = study_spec("mnist")
    assert with_search(grid, "grid") is grid
    with pytest.raises(ValueError, match="--num-samples 5: for --search random or optuna"):
        with_search(grid, "grid", 5)  # it would do nothing
    with pytest.raises(ValueError, match="--search optuna: for the sequence tasks"):
        with_search(study_spec("minigrid-empty"), "optuna", 3)


def test_an_optuna_search_logged_to_mlflow_writes_the_usual_rows(mnist_dir, tmp_path,
                                                                  ray_session):
    """Optuna draws two configs; each trial packs both seeds; the parquet rows are the
    grid's (one per model); MLflow's local store holds one run per trial with the metric."""
    import mlflow  # the 'tracking' extra, part of 'dev'
    base = StudySpec(name="search", task="mnist", trainable=MnistTrainable,
                     base_config=dict(SMALL, data_dir=str(mnist_dir), train_size=7,
                                      eval_sizes=[9], batch_size=64),
                     variants=[dict(model="rim", num_units=4, cell="lstm", k=2)],
                     seeds=[0, 1], iterations=1, metric="accuracy")
    spec = with_search(base, "optuna", 2, fixed={"hidden_size": 8})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # a local store
    outcome = execute_study(spec, storage=str(tmp_path), mlflow_uri=uri)
    assert not outcome.failures
    df = read_results(outcome.path)
    final = df[df["final"] & (df["metric"] == "accuracy")]
    assert final["trial_id"].nunique() == 2 and len(final) == 2 * 2 * 2  # trials x seeds x sizes
    assert set(final["seed"]) == {0, 1} and final["Ka"].between(1, 4).all()
    lrs = {trial: cfg for trial, cfg in zip(final["trial_id"], final["config_json"])}
    assert len(set(lrs.values())) == 2  # two different drawn configs
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("search")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and all("accuracy" in run.data.metrics for run in runs)
    assert all(1e-4 <= float(run.data.params["lr"]) <= 1e-2 for run in runs)
