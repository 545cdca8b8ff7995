"""A value given twice and a number out of range end a study in one line before Ray starts,
and no table counts a model's seed twice."""

import warnings

import pandas as pd
import pytest

from analysis.tables import study_tables, summarise, verdicts
from rim_rllib.tune.study import StudySpec
from test_cli import load
from test_verdicts import results as hand_made


@pytest.fixture
def no_ray(tmp_path, monkeypatch):
    """Every study in these tests must stop before Ray starts; the data preflight passes."""
    from mnist_files import write_mnist
    monkeypatch.setenv("RIM_DATA_DIR", str(write_mnist(tmp_path / "mnist", 16, 16)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("rim_rllib.tune.study.start_ray", lambda *a, **k: pytest.fail(
        "Ray started although the input is bad"))


def one_line_exit(script: str, argv: list, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        load(script).main(argv)
    code = exit_info.value.code
    message = (capsys.readouterr().err + (code if isinstance(code, str) else "")).strip()
    assert code != 0 and code is not None
    assert "\n" not in message and "Traceback" not in message, message
    return message


@pytest.mark.parametrize("script, argv, message", [
    ("ka_sweep", ["--seeds", "0", "0"], "argument --seeds: 0 is given twice (0 0)"),
    ("ka_sweep", ["--seeds", "3", "1", "3"], "argument --seeds: 3 is given twice (3 1 3)"),
    ("ka_sweep", ["--ka", "2", "2"], "argument --ka: 2 is given twice"),
    ("grid", ["--kt", "4", "4"], "argument --kt: 4 is given twice"),
    ("grid", ["--cells", "lstm", "gru", "lstm"], "argument --cells: lstm is given twice"),
    ("minigrid_transfer", ["--tasks", "minigrid-empty", "minigrid-empty"],
     "argument --tasks: minigrid-empty is given twice"),
    ("collapse", ["--cures", "none", "none"], "argument --cures: none is given twice"),
])
def test_a_grid_value_given_twice_is_refused(script, argv, message, no_ray, capsys):
    error = one_line_exit(script, argv, capsys)
    assert message in error and "count them as more samples" in error


def test_a_spec_with_a_repeated_seed_is_refused():
    with pytest.raises(ValueError, match=r"seeds \[1\] are given more than once"):
        StudySpec(name="s", task="mnist", trainable=object, base_config={},
                  variants=[{"model": "lstm"}], seeds=[0, 1, 1], iterations=1,
                  metric="accuracy")


@pytest.mark.parametrize("argv, message", [
    (["--set", "lr=-1"], "config['lr'] must be a positive finite number, got -1"),
    (["--set", "lr=nan"], "config['lr'] must be a positive finite number, got 'nan'"),
    (["--set", "lr=0"], "config['lr'] must be a positive finite number, got 0"),
    (["--set", "lr=1e400"], "config['lr'] must be a positive finite number, got inf"),
    (["--set", "lr=fast"], "config['lr'] must be a positive finite number, got 'fast'"),
    (["--set", "grad_clip=inf"], "config['grad_clip'] must be a positive finite number or "
                                 "None, got 'inf'"),
    (["--set", "balance_loss=-0.1"], "config['balance_loss'] must be a finite number >= 0"),
    (["--set", "hidden_size=2.5"], "config['hidden_size'] must be a positive int, got 2.5"),
    (["--set", "hidden_size=True"], "config['hidden_size'] must be a positive int, got True"),
    (["--set", "train_subset=0"], "config['train_subset'] must be a positive int or None"),
    (["--set", "eval_sizes=(16, 0)"], "config['eval_sizes'] must be a list of image sizes"),
    (["--set", "warmup=nan"], "config['warmup'] must be the fraction of training steps"),
    # the RIM's own checks, named by the config key
    (["--set", "input_dropout=1.0"], "config['input_dropout'] must be a probability in "
                                     "[0, 1), got 1.0"),
    (["--set", "comm_dropout=-0.5"], "config['comm_dropout'] must be a probability"),
    (["--set", "score_dropout=nan"], "config['score_dropout'] must be a probability"),
    (["--set", "score_noise=inf"], "config['score_noise'] must be a finite scale >= 0"),
    (["--set", "fatigue=nan"], "config['fatigue'] must be a finite number >= 0, got 'nan'"),
    (["--set", "fatigue_decay=1"], "config['fatigue_decay'] must be a number in [0, 1)"),
    (["--set", "num_input_heads=0"], "config['num_input_heads'] must be a positive int"),
    (["--set", "usage_floor=0.5"], "config['usage_floor'] must be a rate in [0, "
                                   "k/num_units=1/6)"),
    (["--task", "copying", "--set", "lr=nan"], "config['lr'] must be a positive finite"),
    (["--task", "copying", "--set", "input_key_size=0"], "config['input_key_size'] must be a "
                                                         "positive int"),
])
def test_a_bad_number_ends_a_sequence_study_before_ray(argv, message, no_ray, capsys):
    assert message in one_line_exit("ka_sweep", argv, capsys)


@pytest.mark.parametrize("setting, message", [
    ("ppo={'lr': -1}", "config['ppo']['lr'] must be a positive finite number, got -1"),
    ("ppo={'gamma': 1.5}", "config['ppo']['gamma'] must be a fraction in [0, 1], got 1.5"),
    ("ppo={'entropy_coeff': 'nan'}", "config['ppo']['entropy_coeff'] must be a finite "
                                     "number >= 0"),
    ("ppo={'num_epochs': 0}", "config['ppo']['num_epochs'] must be a positive int"),
    # RLlib's own validation of the PPO config, its first line
    ("ppo={'minibatch_size': 100000}", "`minibatch_size` (100000) must be <= "
                                       "`train_batch_size_per_learner` (2048)"),
    ("rim={'score_noise': -1}", "config['rim']['score_noise'] must be a finite scale >= 0"),
    ("rim={'input_dropout': 2}", "config['rim']['input_dropout'] must be a probability"),
    ("frames=0", "config['frames'] must be a positive int, got 0"),
    ("eval_episodes=nan", "config['eval_episodes'] must be a positive int, got 'nan'"),
    ("num_env_runners=-1", "config['num_env_runners'] must be an int >= 0 or None, got -1"),
    ("num_env_runners=3", "num_env_runners=3 does not split num_envs=16 environments"),
])
def test_a_bad_number_ends_a_minigrid_study_before_ray(setting, message, no_ray, capsys):
    error = one_line_exit("ka_sweep", ["--task", "minigrid-empty", "--set", setting], capsys)
    assert message in error


def test_a_seed_reported_twice_counts_once_with_a_warning():
    data = hand_made({("rim", 6, 4): [0.8, 0.9, 0.4], ("lstm", 6, None): [0.5, 0.6, 0.7]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean file folds nothing and says nothing
        clean_tables, clean_numbers = study_tables(data)
    final = data[data["final"]]
    # a resumed study that reported seed 2 again: the tables are the clean file's
    resumed = pd.concat([data, final[final["seed"] == 2]], ignore_index=True)
    folded = len(resumed) - len(data)
    with pytest.warns(UserWarning, match=rf"^{folded} of {len(final) + folded} finished "
                                         r"results rows repeat a model, seed and evaluation"):
        tables, numbers = study_tables(resumed)
    for title, table in clean_tables.items():
        pd.testing.assert_frame_equal(tables[title], table)
    pd.testing.assert_frame_equal(numbers["verdicts"], clean_numbers["verdicts"])
    # another run of seed 0 merged in: still three seeds, seed 0 the mean of its two runs
    merged = pd.concat([data, final[final["seed"] == 0].assign(value=final["value"] - 0.2)],
                       ignore_index=True)
    with pytest.warns(UserWarning, match="each seed counts once"):
        summary = summarise(merged)
    assert (summary["n"] == 3).all()
    rim = summary[(summary["model"] == "rim") & (summary["eval_on"] == "14")]
    assert rim["mean"].item() == pytest.approx((0.7 + 0.9 + 0.4) / 3)
    with pytest.warns(UserWarning, match="each seed counts once"):
        v = verdicts(merged)
    assert (v["n"] == 3).all() and (v["n_baseline"] == 3).all()
