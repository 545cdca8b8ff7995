"""Every Python snippet of the README and of the documentation pages runs as written, each
on its own."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SNIPPETS = [(page.relative_to(ROOT), snippet) for page in PAGES
            for snippet in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)]


def test_the_readme_and_the_guide_have_snippets():
    assert any(page.name == "README.md" for page, _ in SNIPPETS)
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize("page, snippet", SNIPPETS,
                         ids=[f"{page}:{s.splitlines()[0][:40]}" for page, s in SNIPPETS])
def test_snippet_runs(page, snippet, tmp_path):
    # HOME in tmp_path: whatever the snippet writes under ~ (RLlib's logs) stays there.
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, text=True,
                            capture_output=True, timeout=900,
                            env=os.environ | {"HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-3000:]
    if "print(algo.train()" in snippet:  # an episode return, not nan
        assert math.isfinite(float(result.stdout.strip().splitlines()[-1]))
