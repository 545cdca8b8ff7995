"""The documentation: the site builds with no warning (a broken link, a missing figure or
page, a docstring the API pages cannot render), the README links only to files that exist,
and the generated reference pages hold every command and config key."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d",
                             str(out)], cwd=ROOT, text=True, capture_output=True,
                            timeout=600, env=os.environ | {"NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def test_the_site_builds_strictly(site):
    assert (site / "index.html").is_file()
    for page in ("results/mnist", "results/copying", "results/minigrid", "reproducing",
                 "reference/api", "notebook/2026-11-unit-collapse"):
        assert (site / page / "index.html").is_file(), page


def test_the_reference_pages_are_generated_from_the_code(site):
    cli = (site / "reference/cli/index.html").read_text()
    for command in ("sweep", "grid", "collapse", "table", "evaluate-rl", "bench rim-speed"):
        assert f"usage: rim {command}" in cli, command
    assert "--matched-lstm" in cli and "--seeds SEEDS" in cli
    config = (site / "reference/config/index.html").read_text()
    for key in ("input_encoding", "rank_by", "k_anneal", "eval_dormants", "checkpoint_every"):
        assert f"<code>{key}</code>" in config, key


def test_every_readme_link_resolves():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert local, "the README links to the docs"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, missing
