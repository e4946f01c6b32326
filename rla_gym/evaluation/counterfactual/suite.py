"""One suite's whole counterfactual run: the real outcomes, every model scored on them, and the
record of what ran."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rla_gym.evaluation.counterfactual.config import CounterfactualConfig
from rla_gym.evaluation.counterfactual.reality import measure_real
from rla_gym.evaluation.counterfactual.scoring import score_models

__all__ = ["evaluate_suite"]


def evaluate_suite(
    bundle: str | Path,
    cfg: CounterfactualConfig,
    *,
    direct: str | Path | None = None,
    encoder: Any = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure one bundle against its real simulator (see :mod:`rla_gym.evaluation.counterfactual`).

    Args:
        bundle: the env's artifacts bundle (its manifest names simulator, task, encoder, chunk).
        cfg: what to run.
        direct: optional direct-regression checkpoint on the same encoder, measured on the same
            starts and outcomes as ``"direct"``.
        encoder: the bundle's encoder, already built (default: rebuilt from the manifest's
            fingerprint with default options).
        log: progress messages.

    Returns:
        ``{"rla-wm": {"1": metrics, "4": ..., "rla_ceiling": ...}, "direct": {...}?, "run":
        {...}}`` where ``run`` records the bundle, starts, outcome names and wall-clock.

    Raises:
        EncoderMismatchError: ``encoder`` or ``direct`` was made for other features.
    """
    t_all, cpu_all = time.perf_counter(), time.process_time()
    outcomes = measure_real(bundle, cfg, encoder=encoder, log=log)
    models: dict[str, dict[str, Any]] = {"rla-wm": {}}
    if direct is not None:
        models["direct"] = {"world_model": str(direct)}
    result = score_models(outcomes, cfg, models, log=log)
    from rla_gym.envs.artifacts import MANIFEST
    from rla_gym.utils.io import load_json

    man = load_json(Path(bundle) / MANIFEST)  # the run record needs no bank
    result["run"] = {
        "bundle": str(bundle),
        "bundle_created_utc": man["created_utc"],
        "sim": man["sim"],
        "task": man["task"],
        "encoder_fingerprint": man["encoder_fingerprint"],
        "chunk": man["chunk"],
        "horizons": list(outcomes.horizons),
        "outcomes": list(cfg.outcomes),
        "config": asdict(cfg),
        "direct_checkpoint": None if direct is None else str(direct),
        "starts": outcomes.starts,
        "episode_seeds": [cfg.collection_seed + e for e in range(cfg.episodes)],
        "noise": "the M outcomes of one start share their flow-noise seed",
        "wall_clock_s": {
            **outcomes.seconds,
            "dream": result.pop("_seconds"),
            "total": time.perf_counter() - t_all,
        },
        # Wall-clock depends on who else uses the cores; CPU time of this process does not.
        "cpu_s": time.process_time() - cpu_all,
    }
    return result
