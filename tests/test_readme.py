"""Every Python snippet of the README runs as written, each on its own."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_snippets():
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.splitlines()[0][:40] for s in SNIPPETS])
def test_readme_snippet_runs(snippet, tmp_path):
    # HOME in tmp_path: whatever the snippet writes under ~ (RLlib's logs) stays there.
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, text=True,
                            capture_output=True, timeout=900,
                            env=os.environ | {"HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    if "print(algo.train()" in snippet:  # an episode return, not nan
        assert math.isfinite(float(result.stdout.strip().splitlines()[-1]))
