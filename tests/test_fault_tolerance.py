"""Studies survive faults: a crashing trial is retried from its checkpoint, a failed trial
loses nobody's results, a killed driver resumes without re-running finished trials, and
concurrent exports never corrupt the parquet. These kill real processes."""

import argparse
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from ray.tune import ExperimentAnalysis

from rim_rllib.tune.mnist import MnistTrainable
from rim_rllib.tune.results import export_results, read_results
from rim_rllib.tune.study import StudySpec, run_study
from studies import study_cli

REPO = Path(__file__).resolve().parents[1]
TINY = dict(hidden_size=8, input_key_size=8, input_query_size=8, input_value_size=8,
            comm_key_size=8, comm_query_size=8, comm_value_size=8, num_comm_heads=2,
            train_size=7, eval_sizes=[9], batch_size=64)


def spec(name, trainable, mnist_dir, variants, iterations=3, max_failures=2):
    return StudySpec(name=name, task="mnist", trainable=trainable,
                     base_config=dict(TINY, data_dir=str(mnist_dir)), variants=variants,
                     seeds=[0], iterations=iterations, metric="accuracy",
                     max_failures=max_failures)


def test_crashing_trial_is_retried_from_its_last_checkpoint(mnist_dir, tmp_path, ray_session):
    events = tmp_path / "events.log"

    class CrashOnceAtEpoch2(MnistTrainable):
        def step(self):
            with open(events, "a") as f:
                f.write(f"{self.epoch + 1}\n")
            crashed = tmp_path / "crashed"
            if self.epoch + 1 == 2 and not crashed.exists():
                crashed.touch()
                os._exit(1)  # the worker process dies mid-trial
            return super().step()

    path = run_study(spec("retry", CrashOnceAtEpoch2, mnist_dir,
                          [dict(model="rim", num_units=4, k=2)]), storage=str(tmp_path))
    # Epoch 1, the crash at 2, then epoch 2 again from the epoch-1 checkpoint, then 3.
    assert events.read_text().split() == ["1", "2", "2", "3"]
    df = read_results(path)
    assert set(df["status"]) == {"TERMINATED"}
    assert sorted(df[df["final"]]["iteration"].unique()) == [3]
    assert sorted(df["iteration"].unique()) == [1, 2, 3]


def fails_for_lstm():
    """A trainable whose LSTM trials fail at setup (defined in a function so that Ray
    ships the class by value to its workers)."""
    class FailsForLSTM(MnistTrainable):
        def setup(self, config):
            if config["variant"]["model"] == "lstm":
                raise RuntimeError("this trial cannot start")
            super().setup(config)
    return FailsForLSTM


def _tabulate(study_spec, storage):
    from rim_rllib.tune.study import add_study_arguments
    parser = argparse.ArgumentParser(prog="study")
    parser.add_argument("--preset", default="cpu")
    add_study_arguments(parser)  # what every study script's arguments hold
    args = parser.parse_args(["--storage", str(storage)])
    return study_cli.run_and_tabulate(parser, args, lambda: study_spec)


def test_a_failed_trial_keeps_the_others_results(mnist_dir, tmp_path, ray_session, capsys):
    path, table = _tabulate(spec("partial", fails_for_lstm(), mnist_dir,
                                 [dict(model="rim", num_units=4, k=2),
                                  dict(model="lstm", num_units=4)],
                                 iterations=2, max_failures=0), tmp_path)
    df = read_results(path)
    failed = df[df["model"] == "lstm"]
    assert len(failed) == 1 and failed["status"].item() == "ERROR"
    assert failed["value"].isna().all() and failed["eval_on"].isna().all()
    done = df[(df["model"] == "rim") & (df["metric"] == "accuracy")]
    assert set(done["status"]) == {"TERMINATED"} and len(done[done["final"]]) == 2
    # The table of the finished trial, then one line per distinct error.
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("|")]
    assert rows[2:] == ["rim"]  # header, rule, then the finished trial only
    assert table.splitlines()[-1] == "1 trial failed: RuntimeError: this trial cannot start"


def test_a_study_whose_trials_all_fail_exits_with_their_errors(mnist_dir, tmp_path,
                                                               ray_session, capsys):
    failing = spec("doomed", fails_for_lstm(), mnist_dir,
                   [dict(model="lstm", num_units=4, cell=c) for c in ("a", "b")],
                   iterations=1, max_failures=0)
    with pytest.raises(SystemExit) as exit_info:
        _tabulate(failing, tmp_path)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["study: error: no trial of study 'doomed' finished",
                                "2 trials failed: RuntimeError: this trial cannot start"]


def _export(args):
    experiment, out = args
    return export_results(experiment, "retry", "mnist", out=out)


def test_concurrent_exports_never_corrupt_the_file(mnist_dir, tmp_path, ray_session):
    run_study(spec("concurrent", MnistTrainable, mnist_dir,
                   [dict(model="rim", num_units=4, k=2), dict(model="lstm", num_units=4)],
                   iterations=1), storage=str(tmp_path))
    out = str(tmp_path / "shared.parquet")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_export, [(str(tmp_path / "concurrent"), out)] * 8)
    expected = read_results(export_results(tmp_path / "concurrent", "retry", "mnist",
                                           out=tmp_path / "single.parquet"))
    pd.testing.assert_frame_equal(read_results(out), expected)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


DRIVER = textwrap.dedent('''
    import sys, time
    from rim_rllib.tune.mnist import MnistTrainable
    from rim_rllib.tune.study import StudySpec, run_study

    storage, data_dir, events, resume = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"

    class Logged(MnistTrainable):
        def step(self):
            result = super().step()
            time.sleep(0.5)  # slow enough to be killed mid-study
            with open(events, "a") as f:
                f.write(f"{time.time()} {self.trial_id} {self.epoch}\\n")
            return result

    spec = StudySpec(name="killed", task="mnist", trainable=Logged,
                     base_config=dict(hidden_size=8, input_key_size=8, input_query_size=8,
                                      input_value_size=8, comm_key_size=8, comm_query_size=8,
                                      comm_value_size=8, num_comm_heads=2, train_size=7,
                                      eval_sizes=[9], batch_size=64, data_dir=data_dir),
                     variants=[dict(model="rim", num_units=4, k=k) for k in (1, 2, 3, 4)],
                     seeds=[0, 1], iterations=3, metric="accuracy")
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    run_study(spec, storage=storage, resume=resume)
''')


def _events(path: Path) -> list[tuple[float, str, int]]:
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [(float(t), trial, int(epoch)) for t, trial, epoch in rows]


def _terminated(experiment: Path) -> set[str]:
    """Trials that Tune's persisted experiment state records as finished."""
    try:
        return {t.trial_id for t in ExperimentAnalysis(str(experiment)).trials
                if t.status == "TERMINATED"}
    except Exception:  # not written yet, or being replaced
        return set()


def test_killed_driver_resumes_without_rerunning_finished_trials(mnist_dir, tmp_path):
    script, events = tmp_path / "driver.py", tmp_path / "events.log"
    experiment = tmp_path / "storage" / "killed"
    script.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def driver(resume: bool) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), str(tmp_path / "storage"),
                                 str(mnist_dir), str(events), "1" if resume else "0"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)

    first = driver(resume=False)
    deadline = time.time() + 240
    while len(_terminated(experiment)) < 2:
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the study made no progress"
        time.sleep(0.5)
    time.sleep(random.uniform(0, 2))  # a random moment after that
    os.killpg(first.pid, signal.SIGKILL)  # the driver and the Ray it started, at once
    first.wait()
    killed_at = time.time()
    completed = _terminated(experiment)
    assert 2 <= len(completed) < 8
    # Exporting the interrupted study marks the unfinished trials instead of failing.
    partial = read_results(export_results(experiment, "killed", "mnist",
                                          out=tmp_path / "partial.parquet"))
    assert partial["trial_id"].nunique() == 8
    assert set(partial.loc[partial["status"] == "TERMINATED", "trial_id"]) == completed
    unfinished = partial[partial["status"] != "TERMINATED"]
    assert not unfinished.empty and not unfinished["final"].any()

    second = driver(resume=True)
    assert second.wait(timeout=300) == 0, second.stderr.read().decode()[-2000:]

    log = _events(events)
    for trial in completed:  # no trial recorded as finished ran again
        assert not [e for t, tr, e in log if tr == trial and t > killed_at]
    df = read_results(experiment / "results.parquet")
    final = df[df["final"] & (df["metric"] == "accuracy")]
    assert final["trial_id"].nunique() == 8 and set(final["status"]) == {"TERMINATED"}
    assert len(final) == 8 * 2 and (final["iteration"] == 3).all()
    # Every epoch of every trial ran (interrupted trials went on from their checkpoints).
    assert {(tr, e) for _, tr, e in log} == {(tr, e) for tr in final["trial_id"]
                                            for e in (1, 2, 3)}
