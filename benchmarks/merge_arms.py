"""Merge the arms of result files written by parallel runs into one shipped result file.

Two arms of ``rl_in_dream_reacher.py`` (e.g. the dream and the real PPO arm) are best run side by
side, one process per core, each writing its own ``--out``: two processes writing one file would
lose one's rows. This puts their arms into the shipped file afterwards. Each merged arm keeps the
``git_sha`` and ``time_utc`` of the run that made it (``provenance``), since the shipped file's
own provenance is that of its first run, and the bundle its run read (``artifacts``) where that is
not the shipped file's.

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
    into: tyro.conf.Positional[Path]
    """the shipped result file the arms go into"""
    sources: tyro.conf.Positional[tuple[Path, ...]]
    """result files of single runs (their ``arms``)"""
    replace: bool = False
    """overwrite arms the shipped file already holds"""
    arms: tuple[str, ...] = ()
    """merge only these arms (every source must hold each); default: every arm"""


def merge(
    into: dict[str, Any],
    source: dict[str, Any],
    name: str,
    replace: bool,
    only: tuple[str, ...] = (),
) -> list[str]:
    """Put ``source``'s arms (``only`` these, if given) into ``into`` (in place); returns the
    merged arm names.

    Raises:
        ValueError: another task or bundle build; an arm already there without ``replace``; an
            arm of ``only`` that ``source`` does not hold.
    """
    for key in KEYS:
        if source.get(key) != into.get(key):
            raise ValueError(
                f"{name} has {key}={source.get(key)!r}, the shipped file {into.get(key)!r}: "
                "its arms were not measured on the same thing; write them to their own file"
            )
    missing = sorted(set(only) - set(source["arms"]))
    if missing:
        raise ValueError(f"{name} holds no arm {missing}; it holds {sorted(source['arms'])}")
    arms = {a: r for a, r in source["arms"].items() if not only or a in only}
    clash = sorted(set(arms) & set(into["arms"]))
    if clash and not replace:
        raise ValueError(
            f"{name}: the shipped file already holds {clash}; pass --replace to overwrite them"
        )
    stamp = {k: source.get("provenance", {}).get(k) for k in ("git_sha", "time_utc")}
    for arm, row in arms.items():
        row = {**row, "provenance": row.get("provenance", stamp)}
        if "artifacts" not in row and source.get("bundle") != into.get("bundle"):
            row["artifacts"] = source.get("bundle")  # the bundle its run read, not the file's
        into["arms"][arm] = row
    return list(arms)


def main(args: Args) -> None:
    shipped = load_json(args.into)
    # Check every file before writing any: a refused merge leaves the shipped file as it was.
    merged = [merge(shipped, load_json(p), str(p), args.replace, args.arms) for p in args.sources]
    save_json(shipped, args.into)
    for path, arms in zip(args.sources, merged, strict=True):
        for arm in arms:
            row = shipped["arms"][arm]
            print(f"{path}: {arm}: {row.get('success')}/{row.get('episodes')}")


if __name__ == "__main__":
    main(tyro.cli(Args))
