"""The README and the docs pages: links resolve, the README stays short, the benchmark blocks are
up to date, and no script grows past the line limit."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300
PY_MAX_LINES = 600
# Folders whose .py files must stay under PY_MAX_LINES. rla_gym/ joins once its split is done.
LINE_LIMITED_DIRS = ("rla_gym", "benchmarks", "examples")

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"(`+)(?:(?!\n\n).)+?\1", re.S)  # may wrap, not across paragraphs
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code (links there are not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page, numbered like GitHub's when a slug repeats."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        m = re.match(r"#{1,6} +(.*?)#*\s*$", line)
        if not m:
            continue
        slug = github_slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file, or heading anchor in a .md file, is missing."""
    bad = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{page.name}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{page.name}: {target} (no heading with this anchor in {dest.name})")
    return bad


def too_long_py_files(folder: str, limit: int = PY_MAX_LINES) -> list[str]:
    """``.py`` files under ``ROOT / folder`` longer than ``limit`` lines."""
    return [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in sorted((ROOT / folder).rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > limit
    ]


def test_github_slug_matches_githubs_rules() -> None:
    assert github_slug("Can the dream rank policies?") == "can-the-dream-rank-policies"
    assert github_slug("What reacher's features see: a probe study") == (
        "what-reachers-features-see-a-probe-study"
    )
    assert github_slug("World action model: BC + RLA head") == "world-action-model-bc--rla-head"
    assert github_slug("The `rla-gym` command line") == "the-rla-gym-command-line"


def test_the_docs_pages_exist() -> None:
    names = {p.name for p in PAGES}
    for page in ("design", "benchmarks", "studies", "reproduce", "cli", "limits", "wmrl"):
        assert f"{page}.md" in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == []


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#a-section) [ok](#page) [web](https://example.com)\n"
        "[gone](missing.md) [bad anchor](other.md#no-such) `[code](not-a-link.md)`\n"
        "```\n[code](not-a-link-either.md)\n```\n"
    )
    assert broken_links(page) == [
        "page.md: missing.md (no such file)",
        "page.md: other.md#no-such (no heading with this anchor in other.md)",
    ]


def test_readme_is_short() -> None:
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; move material into docs/"


@pytest.mark.parametrize("folder", LINE_LIMITED_DIRS)
def test_no_python_file_is_too_long(folder: str) -> None:
    assert too_long_py_files(folder) == []


def test_rendered_benchmark_blocks_are_up_to_date() -> None:
    run = subprocess.run(
        [sys.executable, "benchmarks/report.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _report(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``benchmarks/report.py``, a script, loaded from its path."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    return report


def test_report_refuses_unknown_and_repeated_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = _report(monkeypatch)
    placed = "".join(f"<!-- BENCH:{k} -->\nold\n<!-- /BENCH:{k} -->\n" for k in report.BLOCKS)
    (tmp_path / "a.md").write_text(placed)
    assert set(report.placements([tmp_path / "a.md"])) == set(report.BLOCKS)
    (tmp_path / "b.md").write_text("<!-- BENCH:no_such -->\nx\n<!-- /BENCH:no_such -->\n")
    with pytest.raises(SystemExit, match="unknown block BENCH:no_such"):
        report.placements([tmp_path / "a.md", tmp_path / "b.md"])
    with pytest.raises(SystemExit, match="already placed"):
        report.placements([tmp_path / "a.md", tmp_path / "a.md"])


def test_report_moves_links_to_the_page_they_land_in(monkeypatch: pytest.MonkeyPatch) -> None:
    report = _report(monkeypatch)
    text = "![plot](benchmarks/results/fidelity.png) [web](https://x.org/a) [here](#anchor)"
    assert report.relink(text, ROOT / "README.md") == text
    assert report.relink(text, ROOT / "docs" / "benchmarks.md") == text.replace(
        "(benchmarks/", "(../benchmarks/"
    )
