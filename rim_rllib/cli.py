"""Command-line helpers shared by the study scripts, the analysis tools and
``rim_rllib.rl.evaluate`` (the standard library and atomic writes only)."""

import argparse
import ast
import math
from pathlib import Path

from rim_rllib.atomic import atomic_write


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` with the module docstring as written and every option's default: its
    value, unless the help already says what it is (``default: the preset's``) or there
    is none to show (``None``, an unset switch)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or not action.option_strings
                or action.default in (None, False, [], argparse.SUPPRESS)):
            return text
        return text + " (default: %(default)s)"


def _at_least(convert, kind: str, low):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind} >= {low}, got {text!r}") from None
        if not (value >= low and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be {kind} >= {low}, got {text}")
        return value
    return parse


def int_at_least(low: int):
    """An argparse ``type``: an int >= ``low``; anything else is refused with a message
    naming the value."""
    return _at_least(int, "an int", low)


def float_at_least(low: float):
    """An argparse ``type``: a number >= ``low``; anything else is refused with a message
    naming the value."""
    return _at_least(float, "a number", low)


class Distinct(argparse.Action):
    """``nargs="+"`` values that define a study's grid (seeds, Ka, Kt, cells, tasks): a
    value given twice would train the same models again and count them as independent
    samples, so it is refused in one line naming the argument and the value."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen = []
        for value in values:
            if value in seen:
                parser.exit(2, f"{parser.prog}: error: argument {option_string}: {value} "
                               f"is given twice ({' '.join(map(str, values))}); each value "
                               "is one point of the grid, and a repeat would train the same "
                               "models again and count them as more samples\n")
            seen.append(value)
        setattr(namespace, self.dest, values)


def show_table(table, out: Path | None, name: str) -> None:
    """Print ``table`` (a pandas DataFrame) as Markdown, missing values as "–", and with a
    folder ``out`` also write it there as the CSV file ``name``, atomically."""
    print(table.fillna("–").to_markdown(index=False))
    if out is not None:
        print("wrote", atomic_write(Path(out) / name, lambda tmp: table.to_csv(tmp, index=False)))


def config_override(text: str) -> tuple[str, object]:
    """An argparse ``type`` for ``--set``: ``KEY=VALUE`` as ``(key, value)``, the value read
    as a Python literal (``3e-3``, ``True``, ``None``, ``(16, 19)``), else kept as text
    (``init=chrono``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        value = raw.strip()
    return key.strip(), value
