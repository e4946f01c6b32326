"""Encoder throughput (images/s) on this machine, written to benchmarks/results/.

Measures every registered encoder at the frame sizes the project uses, at batch 1 (simulator loop)
and batch 16 (dataset encoding). DINOv2 runs with random weights (``Dinov2Encoder.random_init``):
speed does not depend on the weight values, and no real DINOv2 weights are available offline.

Usage:
    python benchmarks/encoder_throughput.py [--seconds 3] [--out results/encoder_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from rla_gym.features import FeatureEncoder, make_encoder
from rla_gym.utils.provenance import provenance

SEED = 0
BATCHES = (1, 16)


def measure(encoder: FeatureEncoder, size: int, batch: int, seconds: float) -> float:
    """Images/s of ``encoder.encode`` on random frames, after one warm-up call.

    Args:
        encoder: the encoder under test.
        size: frame height and width in pixels.
        batch: frames per ``encode`` call.
        seconds: minimum measured wall time; whole calls only.
    """
    frames = np.random.default_rng(SEED).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    encoder.encode(frames)  # warm-up: allocator, ORT/oneDNN kernel selection
    calls = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls == 0:
        encoder.encode(frames)
        calls += 1
    return calls * batch / elapsed


def cases() -> Iterator[tuple[str, Callable[[], FeatureEncoder], int, str]]:
    """``(label, factory, resolution, dtype)`` for every measurement."""
    import torch

    from rla_gym.features.dinov2 import Dinov2Encoder

    for size in (128, 224):
        yield "opennsfw-resnet50-res4", lambda: make_encoder("opennsfw-resnet50-res4"), size, "fp32"
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for size in (112, 224):
            yield (
                "dinov2-vits14 (random init)",
                lambda dtype=dtype: Dinov2Encoder.random_init("vits14", seed=SEED, dtype=dtype),
                size,
                dtype_name,
            )
    yield "tiny", lambda: make_encoder("tiny"), 128, "fp32"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured time per row")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "encoder_throughput.json",
    )
    args = parser.parse_args(argv)

    # Other jobs share these cores; the load average says whether the numbers were contended.
    load_before = os.getloadavg()
    rows = []
    for label, factory, size, dtype in cases():
        encoder = factory()
        for batch in BATCHES:
            ips = measure(encoder, size, batch, args.seconds)
            row = {
                "encoder": label,
                "fingerprint": encoder.fingerprint,
                "resolution": size,
                "batch": batch,
                "dtype": dtype,
                "images_per_s": round(ips, 1),
            }
            rows.append(row)
            print(f"{label:30s} {size:4d}px b{batch:<3d} {dtype:5s} {ips:8.1f} img/s", flush=True)
        del encoder

    result = {
        "provenance": provenance(
            seed=SEED,
            device="cpu",
            seconds_per_row=args.seconds,
            loadavg_1_5_15_before=[round(x, 2) for x in load_before],
            loadavg_1_5_15_after=[round(x, 2) for x in os.getloadavg()],
        ),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
