"""Command-line overrides of a study's trial config and budget, and the plan printed
before a study starts."""

import argparse

import pytest

from rim_rllib.cli import config_override
from rim_rllib.tune.config import flat_config
from rim_rllib.tune.tasks import estimate_seconds, study_spec, with_overrides


@pytest.mark.parametrize("text, parsed", [
    ("lr=1e-3", ("lr", 1e-3)), ("init=chrono", ("init", "chrono")),
    ("compile=False", ("compile", False)), ("train_subset=None", ("train_subset", None)),
    ("eval_sizes=(16, 19)", ("eval_sizes", (16, 19))), (" warmup = 0.1", ("warmup", 0.1)),
])
def test_set_values_are_python_literals_or_text(text, parsed):
    assert config_override(text) == parsed


@pytest.mark.parametrize("text", ["lr", "=3", "lr="])
def test_a_malformed_set_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="must be KEY=VALUE"):
        config_override(text)


def test_overrides_reach_every_trial_and_the_budget():
    """--set wins over the preset and over a variant's own value (the LSTM's lr);
    --epochs sets the iterations."""
    spec = with_overrides(study_spec("mnist"), {"lr": 1e-3, "hidden_size": 16}, epochs=1)
    variants, _ = spec.trial_grid()
    configs = [flat_config(dict(spec.base_config, variant=v)) for v in variants]
    assert {c["lr"] for c in configs} == {1e-3} and {c["hidden_size"] for c in configs} == {16}
    assert spec.iterations == 1
    assert with_overrides(study_spec("copying"), {}).iterations == study_spec("copying").iterations


def test_frames_set_the_minigrid_budget():
    spec = with_overrides(study_spec("minigrid-empty"), {}, frames=4096)
    assert spec.base_config["frames"] == 4096 and spec.iterations == 2  # 16 envs x 128 steps
    assert with_overrides(study_spec("minigrid-empty"), {"frames": 2048}).iterations == 1


def test_the_estimate_scales_the_measured_default_study():
    default = study_spec("mnist")
    full = estimate_seconds(default, "cpu")
    half = with_overrides(default, {"train_subset": 3000}, epochs=6)
    assert estimate_seconds(half, "cpu") == pytest.approx(full)
    few = study_spec("mnist", ks=[1, 2], seeds=[0])
    assert estimate_seconds(few, "cpu") == pytest.approx(full * 3 / 21)
    assert estimate_seconds(study_spec("minigrid-empty"), "cpu") is None


def test_the_progress_table_has_a_short_column_per_swept_setting():
    from rim_rllib.tune.study import progress_reporter
    reporter = progress_reporter(study_spec("mnist"))
    # The LSTM baseline's own lr (the preset's model_config) is a swept setting too.
    assert reporter._parameter_columns == {"variant/model": "model", "variant/num_units": "Kt",
                                           "variant/k": "Ka", "variant/cell": "cell",
                                           "variant/lr": "lr", "seed": "seed"}
    assert list(reporter._metric_columns) == ["accuracy", "training_iteration", "time_total_s"]
    asha = progress_reporter(study_spec("mnist", asha=True))
    assert list(asha._metric_columns)[:2] == ["accuracy_val", "accuracy"]


def test_a_nested_swept_setting_gets_a_column_per_inner_key():
    from rim_rllib.tune.study import progress_reporter
    from rim_rllib.tune.tasks import task_spec
    spec = task_spec("minigrid-empty", "cpu", [
        {"memory": "rim", "num_units": 4, "k": 3, "rim": None},
        {"memory": "rim", "num_units": 4, "k": 3, "rim": {"balance_loss": 0.1}}])
    columns = progress_reporter(spec)._parameter_columns
    assert columns["variant/rim/balance_loss"] == "balance_loss"
    assert "variant/rim" not in columns and columns["variant/k"] == "Ka"
