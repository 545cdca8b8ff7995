"""Writing a benchmark's JSON report atomically."""

import json
from pathlib import Path

from rim_rllib.atomic import atomic_write


def write_report(report: dict, path: Path) -> None:
    text = json.dumps(report, indent=2)  # fails before anything is written
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    print(f"wrote {path}")
