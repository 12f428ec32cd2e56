"""The code stays as its tools say: ruff's lint and format are clean (pyproject.toml's rules),
so a change that breaks them fails here, not only in a pre-commit hook someone skipped."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tool(*argv: str) -> subprocess.CompletedProcess:
    """A development tool run from the repository root; its output captured."""
    return subprocess.run(list(argv), cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(args):
    done = tool(sys.executable, "-m", "ruff", *args)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_docs_build_strict_and_the_readme_links_resolve(tmp_path):
    """mkdocs --strict fails on a page or link that does not exist; the README and
    CONTRIBUTING.md are outside the site, so their relative links are checked here."""
    done = tool(sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    for page in ("README.md", "CONTRIBUTING.md"):
        text = (ROOT / page).read_text()
        targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
        assert targets or page == "CONTRIBUTING.md"
        missing = [t for t in targets if not (ROOT / t).exists()]
        assert not missing, f"{page} links to files that do not exist: {missing}"


def test_the_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_the_layers_hold_and_no_import_cycle():
    """.importlinter: the pipeline never imports the studio, each layer only those below it
    (imports inside functions and under TYPE_CHECKING count), and no cycle among siblings."""
    done = tool(str(Path(sys.executable).with_name("lint-imports")))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.integration
def test_mypy_is_clean_on_the_pipeline():
    """pyproject.toml's [tool.mypy]: the library's types hold (about 30 s, so the fast
    tier leaves it to `make test`)."""
    done = tool(sys.executable, "-m", "mypy")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
