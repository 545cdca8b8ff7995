"""The rim command: one entry point for every tool, with the tools' own arguments, and the
study flags that print without running (--dry-run, --show-config)."""

from importlib.metadata import entry_points

import pytest

from studies import console
from test_input_checks import no_ray  # noqa: F401  (the fixture)


def run(argv, capsys) -> tuple[int | str, str]:
    with pytest.raises(SystemExit) as exit_info:
        console.main(argv)
    out = capsys.readouterr()
    return exit_info.value.code, out.out + out.err


def test_rim_is_the_installed_console_script():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "rim"]
    assert script.value == "studies.console:main"


def test_rim_lists_its_commands(capsys):
    assert console.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("sweep", "grid", "table", "report", "evaluate-rl", "bench"):
        assert f"\n  {command} " in out
    code, _ = run([], capsys)
    assert "name a command" in str(code)
    code, _ = run(["swep"], capsys)
    assert "unknown command 'swep'" in str(code)
    code, _ = run(["bench", "fast"], capsys)
    assert "name a benchmark, one of ['rim-speed'" in str(code) and "got 'fast'" in str(code)


def test_a_subcommand_takes_the_tools_arguments(capsys):
    code, out = run(["table", "--help"], capsys)
    assert code == 0 and out.startswith("usage: rim table")
    code, out = run(["bench", "rim-speed", "--help"], capsys)
    assert code == 0 and out.startswith("usage: rim bench rim-speed")


def test_dry_run_prints_the_trials_and_exits_before_ray(no_ray, capsys):  # noqa: F811
    code, out = run(["sweep", "--seeds", "0", "1", "--dry-run"], capsys)
    assert code == 0
    assert "study ka_sweep-mnist-cpu: 2 trials" in out and "seed=[0, 1]" in out
    assert "estimated wall time" in out


def test_a_tiny_studys_estimate_is_not_rounded_to_zero(no_ray, capsys):  # noqa: F811
    code, out = run(["sweep", "--seeds", "0", "--ka", "2", "--epochs", "1", "--set",
                     "train_subset=200", "--dry-run"], capsys)
    assert code == 0
    assert "estimated wall time: under 2 min" in out and "~0 min" not in out


def test_show_config_lists_every_key_with_this_studys_value(no_ray, capsys):  # noqa: F811
    code, out = run(["sweep", "--task", "copying", "--show-config", "--set", "lr=0.002"],
                    capsys)
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:]}
    assert rows["lr"] == ["0.001", "0.002"]           # the default, then this study's
    assert rows["k"][1:] == ["1", "/", "2", "/", "3", "/", "4", "/", "5", "/", "6"]
    assert rows["fatigue_decay"] == ["0.9", "default"]
    assert {"dormant", "rank_by", "input_dropout"} <= set(rows)


@pytest.mark.parametrize("argv, message", [
    (["grid", "--asha"], "unrecognized arguments: --asha"),  # grid.py has --no-asha
    (["minigrid-transfer", "--pack", "seeds"], "unrecognized arguments: --pack"),
    (["minigrid-transfer", "--epochs", "3"], "unrecognized arguments: --epochs"),
    (["minigrid-transfer", "--name", "mine"], "--name mine names one study, and --tasks "
                                              "runs 3"),
    (["sweep", "--num-samples", "4"], "--num-samples 4: for --search random or optuna"),
    (["sweep", "--task", "minigrid-empty", "--max-pack", "2"], "--max-pack 2: MiniGrid"),
])
def test_no_flag_is_taken_to_be_ignored_or_refused(argv, message, no_ray, capsys):  # noqa: F811
    code, out = run(argv, capsys)
    assert code != 0 and message in out + str(code)
