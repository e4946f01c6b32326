"""Does the dream follow the robot's body? Proprio in the dreamed state, measured per suite.

The counterfactual protocol (:mod:`rla_gym.evaluation.counterfactual`) on held-out real starts
of a new collection seed: each start is restored exactly and ``M`` action sequences run from it
(the recorded actions, the recorded ones plus noise of two scales, random ones); the simulator
reports the robot's body at the start and after 1 and 4 chunks beside the encoded frames. Two
world models then roll out from the encoded real start with the same actions and shared flow
noise: the bundle's (features only, "today's") and a **body model** (``train-wm --proprio``,
which also gets the real start's body vector and dreams the next ones).

Per suite, ``benchmarks/results/body_state.json``:

* ``proprio_r2``: ``{"1", "4"}``: R² over every entry of the body vector
  (:mod:`rla_gym.data.proprio`) of the body model's rollout from the real start with the real
  (recorded) actions, against the real body after 1 and 4 chunks; beside it the same over all
  ``M`` sequences, and "the body stays where it started" as the floor;
* ``proprio_direction``: the counterfactual direction of the dreamed body (cosine between the
  real and the dreamed body differences of two sequences from one start);
* ``feature_direction``: ``{"1"}``: the body model's feature direction (the counterfactual
  metric), with the bundle's on the very same outcomes as ``feature_direction_bundle`` (the
  target: no worse);
* ``reward_ranking``: ``{"progress"}``: the Spearman of a progress head that reads (features,
  proprio) ranking one real state's outcomes, read from ``benchmarks/reward_ranking.py``'s
  result (its ``body progress`` row, run with ``--heads body=<head>``).

    python benchmarks/body_state.py --body-wm dmc-reacher=runs/p25/dmc-reacher/wm_body/checkpoint
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro
from counterfactual import suite_paths

from rla_gym.evaluation.counterfactual import (
    CounterfactualConfig,
    dream_outcomes,
    outcome_metrics,
    pair_agreement,
)
from rla_gym.evaluation.counterfactual.scoring import start_noise_seeds
from rla_gym.utils import load_json, provenance, save_json
from rla_gym.utils.stats import r2_score

SUITES = ("dmc-reacher", "robosuite-lift", "libero")
TARGETS = {
    "proprio_r2_1": ">= 0.95",
    "proprio_r2_4": ">= 0.8",
    "reward_ranking_progress": ">= 0.8 on dmc-reacher and robosuite-lift",
    "feature_direction": "no worse than the bundle's on the same outcomes",
}


@dataclass(frozen=True)
class Args:
    body_wm: tuple[str, ...] = ()
    """body world models as ``suite=checkpoint`` (``train-wm --proprio``); a suite is measured
    only when it has one"""
    states: int = 40
    """real start states per suite"""
    episodes: int = 10
    """held-out real episodes the starts come from (even expert, odd noisy)"""
    collection_seed: int = 30_000
    """episode ``e`` resets with seed ``collection_seed + e``: a seed no dataset, bundle or
    earlier benchmark (10,000: counterfactual) used"""
    seed: int = 0
    """perturbations, random actions and flow noise"""
    flow_steps: int = 10
    cache: Path = Path("runs/body_state")
    """real outcomes are saved here per suite and reused (``--redo`` measures them again)"""
    redo: bool = False
    out: Path = Path("benchmarks/results/body_state.json")
    threads: int = 1
    ranking_only: bool = False
    """re-read only the reward-ranking rows (``benchmarks/reward_ranking.py``'s result) into the
    suites already measured, measuring nothing"""


@torch.no_grad()
def dream(
    model: Any,
    outcomes: Any,
    chunk: int,
    action_low: np.ndarray,
    action_high: np.ndarray,
    cfg: CounterfactualConfig,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Roll ``model`` out from every encoded real start with every sequence (the counterfactual
    benchmark's rollout, :func:`dream_outcomes`, with its noise seeds: the ``M`` sequences of
    one start share them). A body model starts from the real start's body. Actions are the
    normalised ``[-1, 1]`` ones scaled to the simulator's range, as the env does.

    Returns:
        ``(features (S, M, H, N, D), body (S, M, H, P) or None)`` at the outcomes' horizons.
    """
    body0 = None
    if model.proprio_fields:
        if outcomes.body is None:
            raise ValueError("a body model needs real outcomes measured with the body")
        body0 = outcomes.body["start"]
    mid = torch.from_numpy((action_high + action_low) / 2)
    half = torch.from_numpy((action_high - action_low) / 2)

    def step(s: Any, a: Any, g: Any, prev: Any, body: Any = None) -> Any:
        raw = mid + half * torch.from_numpy(a).view(len(g), chunk, -1)
        nxt, body_next = model.sample_state(
            s, raw, proprio=body, steps=cfg.flow_steps, generator=g, s_prev=prev
        )
        return nxt[:, 0] if body is None else (nxt[:, 0], body_next)

    bodies: list[np.ndarray] = []
    feats = dream_outcomes(
        step,
        outcomes.start,
        outcomes.sequences,
        chunk,
        outcomes.horizons,
        start_noise_seeds(cfg, len(outcomes.start)),
        cfg.batch_size,
        outcomes.previous,
        body0,
        bodies,
    )
    return feats, (bodies[0] if bodies else None)


def body_metrics(
    outcomes: Any, dreamed: np.ndarray, horizons: tuple[int, ...], fields: tuple[str, ...]
) -> dict[str, Any]:
    """R² (pooled over the body's entries, and per field) and counterfactual direction of the
    dreamed body, per horizon."""
    real, start = outcomes.body["real"], outcomes.body["start"]
    out: dict[str, Any] = {"proprio_r2": {}, "proprio_r2_all": {}, "proprio_r2_stay": {}}
    out["proprio_direction"], out["proprio_r2_by_field"] = {}, {}
    for hi, h in enumerate(horizons):
        key = str(h)
        out["proprio_r2"][key] = r2_score(dreamed[:, 0, hi], real[:, 0, hi])
        out["proprio_r2_by_field"][key] = {
            f: r2_score(dreamed[:, 0, hi, i : i + 1], real[:, 0, hi, i : i + 1])
            for i, f in enumerate(fields)
        }
        out["proprio_r2_all"][key] = r2_score(dreamed[:, :, hi], real[:, :, hi])
        out["proprio_r2_stay"][key] = r2_score(start, real[:, 0, hi])
        cos = [pair_agreement(real[i, :, hi], dreamed[i, :, hi])[0] for i in range(len(real))]
        out["proprio_direction"][key] = float(np.mean(np.concatenate(cos)))
    return out


def measure(suite: str, args: Args, body_wm: str, encoders: dict[str, Any]) -> dict[str, Any]:
    from rla_gym.envs.artifacts import load_artifacts, resolve_artifacts
    from rla_gym.evaluation.counterfactual import RealOutcomes, measure_real
    from rla_gym.features import encoder_from_fingerprint
    from rla_gym.world_model import load_predictor

    cfg = CounterfactualConfig(
        states=args.states,
        episodes=args.episodes,
        collection_seed=args.collection_seed,
        seed=args.seed,
        flow_steps=args.flow_steps,
    )
    bundle = resolve_artifacts(None, suite)
    art = load_artifacts(bundle)
    fp = art.manifest["encoder_fingerprint"]
    cache = args.cache / f"{suite}_real.npz"
    t0 = time.perf_counter()
    if cache.exists() and not args.redo:
        outcomes = RealOutcomes.load(cache)
        print(f"{suite}: real outcomes from {cache}")
    else:
        if fp not in encoders:
            kw = {"num_threads": args.threads} if fp.startswith("opennsfw") else {}
            encoders[fp] = encoder_from_fingerprint(fp, **kw)
        outcomes = measure_real(bundle, cfg, encoder=encoders[fp])
        cache.parent.mkdir(parents=True, exist_ok=True)
        outcomes.save(cache)
    real_s = time.perf_counter() - t0
    low = np.asarray(art.manifest["action_low"], np.float32)
    high = np.asarray(art.manifest["action_high"], np.float32)
    entry: dict[str, Any] = {}
    models = {"bundle": art.load_world_model(), "body": load_predictor(body_wm, fp)}
    feature: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        t1 = time.perf_counter()
        feats, bodies = dream(model, outcomes, art.chunk, low, high, cfg)
        feature[name] = {
            str(h): outcome_metrics(
                outcomes.start,
                outcomes.real[:, :, hi],
                feats[:, :, hi],
                outcomes.reference[hi],
                cfg.outcomes,
            )
            for hi, h in enumerate(outcomes.horizons)
        }
        if bodies is not None:
            entry.update(body_metrics(outcomes, bodies, outcomes.horizons, model.proprio_fields))
        print(f"  {name}: dreamed in {time.perf_counter() - t1:.0f} s")
    entry["feature_direction"] = {"1": feature["body"]["1"]["direction"]}
    entry["feature_direction_bundle"] = {"1": feature["bundle"]["1"]["direction"]}
    entry["feature_metrics"] = feature
    entry["run"] = {
        "bundle": str(bundle),
        "body_world_model": body_wm,
        "body_world_model_meta": load_json(Path(body_wm) / "meta.json")
        if (Path(body_wm) / "meta.json").exists()
        else None,
        "fields": list(models["body"].proprio_fields),
        "states": len(outcomes.start),
        "outcomes": list(cfg.outcomes),
        "horizons": list(outcomes.horizons),
        "episode_seeds": [cfg.collection_seed + e for e in range(cfg.episodes)],
        "real_seconds": real_s,
    }
    return entry


def main(args: Args) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    body_wms = suite_paths(args.body_wm, "body-wm")
    result: dict[str, Any] = load_json(args.out) if args.out.exists() else {}
    result.setdefault("suites", {})
    encoders: dict[str, Any] = {}
    if args.ranking_only:
        for suite, entry in result["suites"].items():
            entry["reward_ranking"] = reward_ranking(suite)
        save_json(result, args.out)
        return result
    for suite in SUITES:
        if suite not in body_wms:
            continue
        entry = measure(suite, args, body_wms[suite], encoders)
        entry["reward_ranking"] = reward_ranking(suite)
        result["suites"][suite] = entry
        result.update(
            benchmark="body_state",
            provenance=provenance(seed=args.seed, encoder="bundle's", device="cpu"),
            targets=TARGETS,
        )
        save_json(result, args.out)
        r2 = entry["proprio_r2"]
        print(
            f"{suite}: proprio R² 1 chunk {r2['1']:.3f}, 4 chunks {r2['4']:.3f} (stay "
            f"{entry['proprio_r2_stay']['1']:.3f} / {entry['proprio_r2_stay']['4']:.3f}); "
            f"feature direction {entry['feature_direction']['1']:.3f} vs bundle "
            f"{entry['feature_direction_bundle']['1']:.3f}; wrote {args.out}"
        )
    return result


RANKING = Path("benchmarks/results/reward_ranking.json")
"""Where the reward ranking of the heads that read the body is measured (its own benchmark,
``benchmarks/reward_ranking.py --heads body=<head> [--distance-head-body]``): read, not re-run."""


def reward_ranking(suite: str) -> dict[str, Any]:
    """The reward-ranking rows of the heads that read the body, beside the features-only ones on
    the same states, from ``benchmarks/reward_ranking.py``'s result."""
    rows = (
        (load_json(RANKING) if RANKING.exists() else {}).get("suites", {}).get(suite) or {}
    ).get("rows", {})
    if suite == "libero":
        return {"progress": None, "why": "not measured: reward_ranking.py covers reacher and Lift"}
    if "body progress" not in rows:
        return {
            "progress": None,
            "why": "not measured: python benchmarks/reward_ranking.py --suite "
            f"{suite} --heads body=<progress head trained with train-progress --proprio>",
        }

    def rho(name: str) -> float | None:
        return rows[name]["spearman"] if name in rows else None

    # The goal-body heads (train-progress --target body_goal) read the body in the form the task
    # needs; where measured, the target reads the one whose goal is a place for the effector
    # (--goal-space effector), else the one in joint space, else the plain body head.
    main = next(n for n in ("effector progress", "goal progress", "body progress") if n in rows)
    return {
        "progress": rho(main),
        "progress_se": rows[main]["se"],
        "states": rows[main]["states"],
        "head": main.removesuffix(" progress"),
        "body_fraction_head": rho("body progress"),
        "goal_body_head": rho("goal progress"),
        "features_only_progress": rho("bundle progress"),
        "distance_supervised_with_body": rho("distance-supervised+body progress"),
        "distance_supervised": rho("distance-supervised progress"),
        "source": f"{RANKING} rows 'body progress', 'bundle progress', 'distance-supervised...'",
    }


if __name__ == "__main__":
    main(tyro.cli(Args))
