"""MkDocs hook: the reference pages that must not drift from the code are written from it
when the site is built. A page asks for a generated block with a marker line:

- ``<!-- cli -->``: ``rim --help`` and every subcommand's ``--help``, from its own argparse
  parser;
- ``<!-- config-keys -->``: every trial config key of each task, its default, and each
  preset's value, from the trainables and ``rim_rllib.tune.tasks``.
"""

import contextlib
import io
import os
import sys
from unittest.mock import patch

def help_text(argv: list[str]) -> str:
    """What ``rim ARGV --help`` prints, 88 columns wide."""
    from studies.console import main
    out = io.StringIO()
    # rim sets sys.argv for the tool it runs; argparse wraps at $COLUMNS
    with (patch.object(sys, "argv", sys.argv), patch.dict(os.environ, COLUMNS="88"),
          contextlib.redirect_stdout(out), contextlib.suppress(SystemExit)):
        main([*argv, "--help"])
    return out.getvalue().rstrip()


def cli_reference() -> str:
    """``rim --help``, then every subcommand's (and benchmark's) ``--help``."""
    from studies.console import BENCHMARKS, COMMANDS
    commands = [[name] for name in COMMANDS if name != "bench"] + [
        ["bench", name] for name in BENCHMARKS]
    sections = [f"```text\n{help_text([])}\n```"]
    for argv in commands:
        module = BENCHMARKS[argv[1]] if argv[0] == "bench" else COMMANDS[argv[0]][0]
        alone = (f"python {module.replace('.', '/')}.py" if module.split(".")[0] in (
            "studies", "benchmarks") else f"python -m {module}")
        sections.append(f"## `rim {' '.join(argv)}`\n\nor `{alone}`\n\n"
                        f"```text\n{help_text(argv)}\n```")
    return "\n\n".join(sections)


def config_reference() -> str:
    """A table per task: every key, the trainable's default, each preset's value."""
    from rim_rllib.tune.tasks import (PRESETS, SEQUENCE_TASKS, config_keys, study_setting,
                                      study_spec)
    sections = []
    for task in (*SEQUENCE_TASKS, "minigrid-empty"):
        specs = [study_spec(task, preset) for preset in PRESETS]
        rows = ["| key | default | " + " | ".join(f"`{p}` preset" for p in PRESETS) + " |",
                "|---|---|" + "---|" * len(PRESETS)]
        for key, default in sorted(config_keys(task).items()):
            cells = [repr(default)] + [study_setting(spec, key) or "default" for spec in specs]
            rows.append(f"| `{key}` | " + " | ".join(
                cell if cell == "default" else f"`{cell}`".replace("|", "\\|")
                for cell in cells) + " |")
        sections.append(f"## {task}\n\n" + "\n".join(rows))
    return "\n\n".join(sections)


GENERATORS = {"<!-- cli -->": cli_reference, "<!-- config-keys -->": config_reference}


def on_page_markdown(markdown: str, page, config, files) -> str:
    for marker, generate in GENERATORS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
