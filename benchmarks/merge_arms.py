"""Merge the arms of result files written by parallel runs into one shipped result file.

Two arms of ``rl_in_dream_reacher.py`` (e.g. the dream and the real PPO arm) are best run side by
side, one process per core, each writing its own ``--out``: two processes writing one file would
lose one's rows. This puts their arms into the shipped file afterwards. Each merged arm keeps the
``git_sha`` and ``time_utc`` of the run that made it (``provenance``), since the shipped file's
own provenance is that of its first run.

Refused, with the file named: a file of another task or another bundle build
(``bundle_created_utc``), and an arm the shipped file already holds (``--replace`` to overwrite
it, e.g. after a rerun).

    python benchmarks/merge_arms.py benchmarks/results/body_rl_reacher.json runs/a.json runs/b.json
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from rla_gym.utils import load_json, save_json

KEYS = ("task", "bundle_created_utc")
"""What every merged file must share with the shipped one."""


@dataclass(frozen=True)
class Args:
    into: Path
    """the shipped result file the arms go into"""
    sources: tuple[Path, ...]
    """result files of single runs (their ``arms``)"""
    replace: bool = False
    """overwrite arms the shipped file already holds"""


def merge(into: dict[str, Any], source: dict[str, Any], name: str, replace: bool) -> list[str]:
    """Put ``source``'s arms into ``into`` (in place); returns the merged arm names.

    Raises:
        ValueError: another task or bundle build; an arm already there without ``replace``.
    """
    for key in KEYS:
        if source.get(key) != into.get(key):
            raise ValueError(
                f"{name} has {key}={source.get(key)!r}, the shipped file {into.get(key)!r}: "
                "its arms were not measured on the same thing; write them to their own file"
            )
    clash = sorted(set(source["arms"]) & set(into["arms"]))
    if clash and not replace:
        raise ValueError(
            f"{name}: the shipped file already holds {clash}; pass --replace to overwrite them"
        )
    stamp = {k: source.get("provenance", {}).get(k) for k in ("git_sha", "time_utc")}
    for arm, row in source["arms"].items():
        into["arms"][arm] = {**row, "provenance": row.get("provenance", stamp)}
    return list(source["arms"])


def main(args: Args) -> None:
    shipped = load_json(args.into)
    # Check every file before writing any: a refused merge leaves the shipped file as it was.
    merged = [merge(shipped, load_json(p), str(p), args.replace) for p in args.sources]
    save_json(shipped, args.into)
    for path, arms in zip(args.sources, merged, strict=True):
        for arm in arms:
            row = shipped["arms"][arm]
            print(f"{path}: {arm}: {row.get('success')}/{row.get('episodes')}")


if __name__ == "__main__":
    main(tyro.cli(Args))
