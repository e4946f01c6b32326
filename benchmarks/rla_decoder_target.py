"""Compare the RLA decoder targets: absolute tokens (paper) vs the residual added to ``s_t``.

Reads the validation history of two ``rla-gym train-rla`` runs that differ only in
``--decoder-target`` and writes their numbers side by side.

    python benchmarks/rla_decoder_target.py \\
        --residual runs/rla_residual --absolute runs/rla_absolute
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tyro

from rla_gym.utils import load_json, provenance, save_json


@dataclass(frozen=True)
class Args:
    residual: Path = Path("runs/rla_residual")
    """run folder trained with --decoder-target residual"""
    absolute: Path = Path("runs/rla_absolute")
    """run folder trained with --decoder-target absolute"""
    out: Path = Path("benchmarks/results/rla_decoder_target.json")


def _run(folder: Path) -> dict:
    vals = [
        r
        for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
        if "val/l1" in r
    ]
    meta = load_json(folder / "checkpoint" / "meta.json")
    cfg = load_json(folder / "checkpoint" / "config.json")
    return {"history": vals, "final": vals[-1], "meta": meta, "config": cfg}


def main(args: Args) -> dict:
    runs = {"residual": _run(args.residual), "absolute": _run(args.absolute)}
    best = min(runs, key=lambda k: runs[k]["final"]["val/l1"])
    result = {
        "provenance": provenance(device="cpu"),
        "runs": runs,
        "kept": best,
        "criterion": "lowest validation L1 after the same number of steps",
    }
    save_json(result, args.out)
    print({k: v["final"] for k, v in runs.items()}, "kept:", best)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
