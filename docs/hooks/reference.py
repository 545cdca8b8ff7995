"""MkDocs hook: the reference pages that must not drift from the code are written from it
when the site is built. A page asks for a generated block with a marker line:

- ``<!-- cli -->``: the ``--help`` of every command, from its own argparse parser;
- ``<!-- config-keys -->``: every trial config key of each task, its default, and each
  preset's value, from the trainables and ``rim_rllib.tune.tasks``.
"""

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: (command as a user types it, how to load its ``main``): a module name, or a script path.
COMMANDS = [
    ("python studies/ka_sweep.py", "studies/ka_sweep.py"),
    ("python studies/grid.py", "studies/grid.py"),
    ("python studies/collapse.py", "studies/collapse.py"),
    ("python studies/minigrid_transfer.py", "studies/minigrid_transfer.py"),
    ("python -m analysis.tables", "analysis.tables"),
    ("python -m analysis.plots", "analysis.plots"),
    ("python -m analysis.report", "analysis.report"),
    ("python -m analysis.selection", "analysis.selection"),
    ("python -m analysis.activations", "analysis.activations"),
    ("python -m rim_rllib.tune.evaluate_mnist", "rim_rllib.tune.evaluate_mnist"),
    ("python -m rim_rllib.rl.evaluate", "rim_rllib.rl.evaluate"),
    ("python benchmarks/rim_speed.py", "benchmarks/rim_speed.py"),
    ("python benchmarks/pack_speed.py", "benchmarks/pack_speed.py"),
    ("python benchmarks/gpu_step.py", "benchmarks/gpu_step.py"),
    ("python benchmarks/rl_throughput.py", "benchmarks/rl_throughput.py"),
    ("python benchmarks/asha_vs_grid.py", "benchmarks/asha_vs_grid.py"),
]


def _main_of(target: str):
    if not target.endswith(".py"):
        return importlib.import_module(target).main
    path = ROOT / target
    sys.path.insert(0, str(path.parent))  # as when the script runs: its folder imports
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def help_text(command: str, target: str) -> str:
    """``command --help`` as the parser prints it, 88 columns wide."""
    out = io.StringIO()
    saved_argv, saved_columns = sys.argv, os.environ.get("COLUMNS")
    sys.argv = [command.split()[-1], "--help"]
    os.environ["COLUMNS"] = "88"
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            _main_of(target)()
    finally:
        sys.argv = saved_argv
        if saved_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved_columns
    return out.getvalue()


def cli_reference() -> str:
    sections = []
    for command, target in COMMANDS:
        sections.append(f"## `{command}`\n\n```text\n{help_text(command, target).rstrip()}\n```")
    return "\n\n".join(sections)


def _value(value) -> str:
    return "–" if value is None else f"`{value!r}`"


def config_reference() -> str:
    from rim_rllib.rim import RIMCell
    from rim_rllib.tune.minigrid import DEFAULTS as MINIGRID_DEFAULTS
    from rim_rllib.tune.sequence import COMMON_DEFAULTS, RIM_KWARGS
    from rim_rllib.tune.tasks import PRESETS, SEQUENCE_TASKS, study_spec

    cell_defaults = {name: p.default for name, p in
                     inspect.signature(RIMCell).parameters.items()}
    sections = []
    for task, (trainable, _) in SEQUENCE_TASKS.items():
        defaults = COMMON_DEFAULTS | trainable.DEFAULTS | {
            key: cell_defaults[key] for key in RIM_KWARGS}
        sections.append(_key_table(task, trainable.__name__, defaults, PRESETS, study_spec))
    sections.append(_key_table("minigrid-empty", "train_minigrid", MINIGRID_DEFAULTS,
                               PRESETS, study_spec))
    return "\n\n".join(sections)


def _key_table(task: str, name: str, defaults: dict, presets, study_spec) -> str:
    """One task's keys: the trainable's default, then each preset's value — the values its
    study's variants take (what it sweeps, or a model's own setting), else its base
    config's, else "default"."""
    specs = {preset: study_spec(task, preset) for preset in presets}
    rows = ["| key | default | " + " | ".join(f"`{p}` preset" for p in presets) + " |",
            "|---|---|" + "---|" * len(presets)]
    for key in sorted(defaults):
        cells = [_value(defaults[key])]
        for spec in specs.values():
            cells.append(_preset_value(spec, key))
        rows.append(f"| `{key}` | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return f"## {task} (`{name}`)\n\n" + "\n".join(rows)


def _preset_value(spec, key: str) -> str:
    """What a preset's study sets ``key`` to: the values its study sweeps, or its base
    config's value with a model's own setting beside it (``0.005; lstm 0.006``)."""
    from rim_rllib.tune.tasks import SWEPT_KEYS
    holding = [v for v in spec.variants if key in v]
    if key in SWEPT_KEYS and holding:
        return " / ".join(f"`{v}`" for v in sorted({repr(v[key]) for v in holding},
                                                    key=_natural))
    parts = [_value(spec.base_config[key])] if key in spec.base_config else []
    by_model = {}
    for variant in holding:
        model = variant.get("model", variant.get("memory"))
        by_model.setdefault(model, set()).add(repr(variant[key]))
    parts += [f"{model} " + " / ".join(f"`{v}`" for v in sorted(values))
              for model, values in by_model.items()]
    return "; ".join(parts) or "default"


def _natural(text: str):
    return (len(text), text)


GENERATORS = {"<!-- cli -->": cli_reference, "<!-- config-keys -->": config_reference}


def on_page_markdown(markdown: str, page, config, files) -> str:
    for marker, generate in GENERATORS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
