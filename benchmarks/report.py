"""Writing a benchmark's JSON report atomically (a temp file, then a rename)."""

import json
import os
import tempfile
from pathlib import Path


def write_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False,
                                     suffix=".tmp") as tmp:
        json.dump(report, tmp, indent=2)
    os.replace(tmp.name, path)
    print(f"wrote {path}")
