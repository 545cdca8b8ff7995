"""Bad input on the study command line: one clear line and a non-zero exit, no traceback."""

import importlib.util
import sys
from pathlib import Path

import pytest

from mnist_files import write_mnist

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def load(script: str):
    if str(STUDIES) not in sys.path:  # as when the script runs: its folder is importable
        sys.path.insert(0, str(STUDIES))
    spec = importlib.util.spec_from_file_location(script, STUDIES / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def mnist_env(tmp_path, monkeypatch):
    monkeypatch.setenv("RIM_DATA_DIR", str(write_mnist(tmp_path / "mnist", 16, 16)))


@pytest.mark.parametrize("argv, message", [
    (["--ka", "7"], "error: Ka=7 is outside 1..Kt=6"),
    (["--task", "minigrid-empty", "--ka", "0"], "argument --ka: must be an int >= 1, got 0"),
    (["--seeds", "-1"], "argument --seeds: must be an int >= 0, got -1"),
    (["--seeds", "0", "x"], "argument --seeds: must be an int >= 0, got 'x'"),
    (["--max-concurrent", "0"], "argument --max-concurrent: must be an int >= 1, got 0"),
    (["--max-pack", "-2"], "argument --max-pack: must be an int >= 1, got -2"),
    (["--name", "../escape"], "argument --name: must be a plain name (letters, digits, "
                              "'-', '_', '.'; not a path), got '../escape'"),
    (["--name", "a/b"], "argument --name: must be a plain name"),
    (["--task", "copying", "--ka", "9"], "error: Ka=9 is outside 1..Kt=6"),
    (["--task", "nope"], "argument --task: invalid choice: 'nope'"),
    (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
    (["--address", "127.0.0.1:1"], "--address 127.0.0.1:1: no Ray cluster reachable there"),
    (["--address", "nonsense"], "--address must be 'auto', 'local', HOST:PORT"),
    (["--storage", "/proc/no/such/dir"], "--storage /proc/no/such/dir: not writable"),
    (["--task", "minigrid-empty", "--pack", "seeds"],
     "--pack seeds: MiniGrid trials train one RLlib policy each"),
    (["--pack", "all"], "argument --pack: invalid choice: 'all'"),
    (["--gpus-per-trial", "-1"], "argument --gpus-per-trial: must be a number >= 0, got -1"),
    (["--gpus-per-trial", "one"], "argument --gpus-per-trial: must be a number >= 0, "
                                  "got 'one'"),
    (["--set", "lr"], "argument --set: must be KEY=VALUE, got 'lr'"),
    (["--set", "lrr=1e-3"], "error: unknown mnist trainable config keys ['lrr']; expected "
                            "some of ['balance_loss', 'batch_size'"),
    (["--set", "batch_size=0"], "error: config['batch_size'] must be a positive int, got 0"),
    (["--set", "k=2"], "error: --set k=...: 'k' is what the study sweeps"),
    (["--epochs", "0"], "argument --epochs: must be an int >= 1, got 0"),
    (["--frames", "1000"], "error: --frames 1000: for the MiniGrid tasks"),
    (["--task", "minigrid-empty", "--epochs", "2"], "error: --epochs 2: MiniGrid trials "
                                                    "train for a number of frames"),
    (["--task", "minigrid-empty", "--set", "stack=classic", "checkpoint_every=0"],
     "error: config['checkpoint_every'] must be a positive int"),
    (["--task", "minigrid-empty", "--set", "stack=old"],
     "error: config['stack'] must be one of ['new', 'classic']"),
])
@pytest.mark.parametrize("script", ["ka_sweep", "collapse"])
def test_bad_study_arguments_exit_with_one_line(script, argv, message, mnist_env, capsys,
                                                tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --storage, ./results, is made before some checks
    with pytest.raises(SystemExit) as exit_info:
        load(script).main(argv)
    assert exit_info.value.code != 0
    error = capsys.readouterr().err + str(exit_info.value.code)
    assert message in error and "Traceback" not in error


def test_missing_mnist_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RIM_DATA_DIR", raising=False)
    monkeypatch.setattr("rim_rllib.mnist_data.urllib.request.urlopen",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(SystemExit) as exit_info:
        load("ka_sweep").main(["--data-dir", str(tmp_path / "none")])
    message = str(exit_info.value.code)
    assert "error: MNIST files not found. Looked in data_dir argument" in message
    assert "--data-dir or set RIM_DATA_DIR" in message and "\n" not in message


@pytest.mark.parametrize("damage", ["truncated", "not gzip"])
def test_a_broken_mnist_file_ends_the_study_before_any_trial(tmp_path, monkeypatch, capsys,
                                                               damage):
    directory = write_mnist(tmp_path / "mnist", 16, 16, sums=False)
    path = directory / "train-images-idx3-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if damage == "truncated" else b"garbage" * 100)
    monkeypatch.setenv("RIM_DATA_DIR", str(directory))
    monkeypatch.setattr("rim_rllib.tune.study.start_ray", lambda *a, **k: pytest.fail(
        "Ray started although the data is broken"))
    with pytest.raises(SystemExit) as exit_info:
        load("ka_sweep").main(["--storage", str(tmp_path / "studies")])
    message = str(exit_info.value.code)
    assert ": error: " in message and "train-images-idx3-ubyte.gz: cannot decompress" in message
    assert "\n" not in message and "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--cures", "magic"], "argument --cures: invalid choice: 'magic'"),
    (["--fatigue", "-1"], "argument --fatigue"),
    (["--task", "minigrid-empty", "--ka", "5"], "Ka=5 is outside 1..Kt=4"),
])
def test_bad_collapse_arguments_exit_with_one_line(argv, message, mnist_env, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load("collapse").main(argv)
    assert exit_info.value.code != 0
    error = capsys.readouterr().err + str(exit_info.value.code)
    assert message in error and "Traceback" not in error


def test_each_collapse_cure_runs_alone():
    """The MNIST preset anneals its RIMs; in the collapse study only the anneal cure does,
    so that 'none' is the uncured RIM."""
    variants = load("collapse").cure_variants("mnist", [2], ["none", "noise", "anneal",
                                                            "balance-anneal", "fatigue"])
    assert [(v["k_anneal"], v["fatigue"], v.get("score_noise"), v.get("balance_loss"))
            for v in variants] == [(0.0, 0.0, None, None), (0.0, 0.0, 0.5, None),
                                   (0.8, 0.0, None, None), (0.8, 0.0, None, 0.1),
                                   (0.0, 1.0, None, None)]
    # MiniGrid trials take the RIM's arguments under "rim", the training loop's at the top.
    variants = load("collapse").cure_variants("minigrid-empty", [2], ["none", "noise",
                                                                     "anneal-fatigue"])
    assert [(v["k_anneal"], v["rim"]) for v in variants] == [
        (0.0, None), (0.0, {"score_noise": 0.5}), (0.8, {"fatigue": 1.0})]
    variants = load("collapse").cure_variants("minigrid-empty", [2], ["none", "fatigue"], 20.0)
    assert [v["rim"] for v in variants] == [None, {"fatigue": 20.0}]
