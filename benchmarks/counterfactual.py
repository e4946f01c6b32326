"""Counterfactual action-faithfulness of the dreamed envs, against their real simulators.

From real states restored exactly, M different action sequences run in the real simulator and in
the dream (from the encoded real state); do the dreamed outcomes differ the way the real ones do?
See :mod:`rla_gym.evaluation.counterfactual` for the protocol and the metrics.

    python benchmarks/counterfactual.py                          # all three embedded bundles
    python benchmarks/counterfactual.py --suites dmc-reacher --states 40
    python benchmarks/counterfactual.py --direct libero=runs/direct/checkpoint

Resumable per suite: the JSON is rewritten after every suite, and suites already in it are
skipped unless ``--redo``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from rla_gym.utils import provenance, save_json
from rla_gym.utils.io import load_json

SUITES = ("libero", "robosuite-lift", "dmc-reacher")
# The targets, checked by report.py from this file.
TARGETS = {
    "direction_min": 0.5,
    "magnitude_ratio_range": [0.5, 2.0],
    "ranking_spearman_min": 0.6,
    "l1_over_copy_last_max": 0.7,
    "l1_horizon": "4",
    "agreement_horizon": "1",
}
NO_DIRECT = (
    "no direct-regression checkpoint was given (--direct <suite>=<checkpoint>); the "
    "embedded bundles ship only RLA-WM"
)


@dataclass(frozen=True)
class Args:
    suites: tuple[str, ...] = SUITES
    """suites to measure (each writes its entry as soon as it is done)"""
    states: int = 40
    """real start states per suite"""
    episodes: int = 10
    """held-out real episodes per suite (half expert, half noisy)"""
    seed: int = 0
    """seed of the perturbations, random actions and flow noise"""
    collection_seed: int = 10_000
    """held-out episode e resets with seed collection_seed + e"""
    flow_steps: int = 10
    """Euler steps per dreamed chunk"""
    direct: tuple[str, ...] = ()
    """direct-regression checkpoints as suite=path (measured as model "direct")"""
    artifacts: tuple[str, ...] = ()
    """bundle overrides as suite=path (default: the embedded bundles)"""
    out: Path = Path("benchmarks/results/counterfactual.json")
    redo: bool = False
    """measure suites again even if --out already holds them"""
    threads: int = 1
    """torch and encoder threads"""


def suite_paths(pairs: tuple[str, ...], flag: str) -> dict[str, str]:
    """``("suite=path", ...)`` of option ``--flag`` -> ``{suite: path}`` (also read by
    ``body_state.py``, which measures on this benchmark's protocol)."""
    out = {}
    for p in pairs:
        suite, sep, path = p.partition("=")
        if not sep or suite not in SUITES or not path:
            raise SystemExit(f"--{flag} takes suite=path with suite one of {SUITES}, got {p!r}")
        out[suite] = path
    return out


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def print_table(suites: dict[str, Any]) -> None:
    """One line per suite, model and horizon (and the RLA ceiling)."""
    print(
        f"{'suite':<15} {'model':<7} {'chunks':>7} {'direction':>9} {'ratio':>7} {'rank rho':>8} "
        f"{'L1':>8} {'copy L1':>8} {'states':>6}"
    )
    for suite, entry in suites.items():
        for model, per_h in entry.items():
            if model == "run" or not isinstance(per_h, dict):
                continue
            for h, m in per_h.items():
                label = "ceiling" if h == "rla_ceiling" else h
                print(
                    f"{suite:<15} {model:<7} {label:>7} {_fmt(m['direction']):>9} "
                    f"{_fmt(m['magnitude_ratio']):>7} {_fmt(m['ranking_spearman']):>8} "
                    f"{_fmt(m['l1'], '.4f'):>8} {_fmt(m['copy_last_l1'], '.4f'):>8} "
                    f"{m['states']:>6}"
                )


def main(args: Args) -> dict[str, Any]:
    import torch

    from rla_gym.envs.rla_world import resolve_artifacts
    from rla_gym.evaluation.counterfactual import CounterfactualConfig, evaluate_suite
    from rla_gym.features import encoder_from_fingerprint

    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        raise SystemExit(f"unknown suites {unknown}; choose from {SUITES}")
    direct, bundles = suite_paths(args.direct, "direct"), suite_paths(args.artifacts, "artifacts")
    torch.set_num_threads(args.threads)
    cfg = CounterfactualConfig(
        states=args.states,
        episodes=args.episodes,
        seed=args.seed,
        collection_seed=args.collection_seed,
        flow_steps=args.flow_steps,
    )
    result: dict[str, Any] = load_json(args.out) if args.out.exists() else {}
    result.setdefault("suites", {})
    encoders: dict[str, Any] = {}
    for suite in args.suites:
        if suite in result["suites"] and not args.redo:
            print(f"{suite}: already in {args.out}, skipped (--redo measures it again)")
            continue
        bundle = resolve_artifacts(bundles.get(suite), suite)
        fp = load_json(bundle / "manifest.json")["encoder_fingerprint"]
        if fp not in encoders:
            # One intra-op thread: the machine is shared and the simulator is the bottleneck.
            kwargs = {"num_threads": args.threads} if fp.startswith("opennsfw") else {}
            encoders[fp] = encoder_from_fingerprint(fp, **kwargs)
        t0 = time.perf_counter()
        entry = evaluate_suite(bundle, cfg, direct=direct.get(suite), encoder=encoders[fp])
        if suite not in direct:
            entry["run"]["direct_omitted"] = NO_DIRECT
        entry["run"]["git_sha"] = provenance()["git_sha"]
        result["suites"][suite] = entry
        result.update(
            benchmark="counterfactual",
            provenance=provenance(
                seed=args.seed, encoder=fp, device="cpu", torch_threads=args.threads
            ),
            targets=TARGETS,
        )
        save_json(result, args.out)
        print(f"{suite}: done in {(time.perf_counter() - t0) / 60:.1f} min, wrote {args.out}")
    print_table(result["suites"])
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
