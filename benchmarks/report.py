"""Render the benchmark JSONs in ``benchmarks/results/`` into the README and the docs pages.

Every benchmark number in ``README.md`` and ``docs/*.md`` sits in a marked block,
``<!-- BENCH:name -->`` ... ``<!-- /BENCH:name -->``, and is written here by the renderer
registered under that name in ``benchmarks/render/`` (one module per benchmark or group of
closely related ones). Each block is placed exactly once; an unknown, repeated or unplaced name
is an error.

    python benchmarks/report.py            # rewrite the marked blocks in place
    python benchmarks/report.py --check    # exit 1 if any page would change
    python benchmarks/report.py --print    # only print every block's markdown
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from render import BLOCKS

ROOT = Path(__file__).parents[1]
BLOCK = re.compile(r"(<!-- BENCH:([\w-]+) -->\n)(.*?)(\n<!-- /BENCH:\2 -->)", re.S)
OPENING = re.compile(r"<!-- BENCH:([\w-]+) -->")
# A relative Markdown link or image target: not a URL, not absolute, not a bare anchor.
LINK = re.compile(r"(\]\()(?!https?:|mailto:|/|#)([^)\s#]+)")


def pages(root: Path = ROOT) -> list[Path]:
    """The files that may hold blocks: the README and every Markdown page in ``docs/``."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def relink(text: str, page: Path, root: Path = ROOT) -> str:
    """Rewrite the repository-root-relative links of a rendered block relative to ``page``."""
    if page.parent == root:
        return text

    def move(m: re.Match[str]) -> str:
        return m.group(1) + Path(os.path.relpath(root / m.group(2), page.parent)).as_posix()

    return LINK.sub(move, text)


def placements(files: list[Path]) -> dict[str, Path]:
    """Where each block is placed; unknown, unclosed or repeated blocks are errors."""
    where: dict[str, Path] = {}
    errors = []
    for f in files:
        text = f.read_text()
        closed = [m.group(2) for m in BLOCK.finditer(text)]
        if sorted(closed) != sorted(OPENING.findall(text)):
            errors.append(f"{f}: a BENCH block is not closed by its <!-- /BENCH:name -->")
        for name in closed:
            if name not in BLOCKS:
                errors.append(f"{f}: unknown block BENCH:{name} (no renderer in benchmarks/render)")
            elif name in where:
                errors.append(f"{f}: BENCH:{name} is already placed in {where[name]}")
            else:
                where[name] = f
    errors += [f"BENCH:{k} is placed in no page" for k in BLOCKS if k not in where]
    if errors:
        raise SystemExit("\n".join(errors))
    return where


def render_pages(files: list[Path], rendered: dict[str, str]) -> dict[Path, str]:
    """Every file's text with its blocks rewritten from ``rendered``."""
    out = {}
    for f in files:
        out[f] = BLOCK.sub(
            lambda m, f=f: m.group(1) + relink(rendered[m.group(2)], f) + m.group(4),
            f.read_text(),
        )
    return out


def main(argv: list[str]) -> int:
    rendered = {k: f() for k, f in BLOCKS.items()}
    if "--print" in argv:
        for k, v in rendered.items():
            print(f"## {k}\n\n{v}\n")
        return 0
    files = pages()
    placements(files)
    stale = [f for f, text in render_pages(files, rendered).items() if text != f.read_text()]
    if "--check" in argv:
        for f in stale:
            print(f"out of date: {f.relative_to(ROOT)} (run python benchmarks/report.py)")
        return 1 if stale else 0
    for f, text in render_pages(stale, rendered).items():
        f.write_text(text)
        print(f"rewrote {f.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
