"""Collect a small real LIBERO dataset, cache features with the offline encoder, and preview it.

This is the quickest end-to-end check of an install: it runs the real LIBERO simulator (headless
MuJoCo), the scripted expert and a noisy expert, stores the episodes, encodes every frame with the
embedded default encoder and writes a summary plus an mp4 preview.

    python examples/collect_libero.py                      # ~2 minutes on 2 CPU cores
    python examples/collect_libero.py --expert 50 --noisy 50 --out data/libero_object_0
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tyro

from rla_gym.data.collect import CollectConfig, collect
from rla_gym.data.encode import encode_dataset
from rla_gym.data.inspect import summarize, write_preview
from rla_gym.features import DEFAULT_ENCODER, make_encoder


@dataclass(frozen=True)
class Args:
    out: Path = Path("data/libero_quickstart")
    """dataset folder"""
    task: str = "libero_object/0"
    """LIBERO task as <suite>/<id>"""
    expert: int = 4
    """scripted-expert episodes"""
    noisy: int = 4
    """noisy-expert episodes (successes and failures)"""
    resolution: int = 128
    """camera resolution in pixels"""
    workers: int = 2
    """simulator processes"""
    encoder: str = DEFAULT_ENCODER
    """feature encoder"""


def main(args: Args) -> dict:
    for policy, n in (("expert", args.expert), ("noisy", args.noisy)):
        if n:
            collect(
                CollectConfig(
                    out=args.out,
                    sim="libero",
                    task=args.task,
                    policy=policy,
                    episodes=n,
                    resolution=args.resolution,
                    workers=args.workers,
                )
            )
    enc = encode_dataset(args.out, make_encoder(args.encoder))
    summary = summarize(args.out)
    summary["preview"] = str(write_preview(args.out, args.out / "preview.mp4"))
    summary["encode"] = enc
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main(tyro.cli(Args))
