"""World action model (paper §7): plain BC vs BC + RLA head on the same labelled episodes, judged by
real-simulator success.

Per suite and seed, ``--labelled`` successful train-split expert episodes are drawn with the seed;
the other train-split expert and noisy episodes are action-free videos. Both methods train the same
``ActorCritic`` for the same optimizer steps on the same labelled minibatches; BC + RLA adds a
linear head on the extractor that predicts the frozen RLA latent ``z(s_t, s_{t+K})`` on labelled
and video rows alike (one video minibatch per labelled minibatch), and drops it before saving.
Each policy then runs in the real simulator (LIBERO: init states ``0..n-1``; robosuite: seeds
``eval_seed + i``). Successes are pooled over seeds with Wilson 95 % intervals; the action MSE on
the validation-split expert episodes is the offline score.

Long, so resumable: (suite, seed, method) entries already in the JSON are skipped, and trained
policies under ``--runs`` are reused.

    python benchmarks/world_action_model.py                       # both suites, 3 seeds (~1 h)
    python benchmarks/world_action_model.py --suites libero --seeds 0 --episodes 2 --steps 50
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from rla_gym.agents import ActorCritic, BCConfig
from rla_gym.data import EpisodeStore
from rla_gym.data.chunks import load_chunks
from rla_gym.evaluation.real import RealEvalConfig, SavedPolicy, evaluate_in_sim
from rla_gym.pipelines.world_action import (
    action_mse,
    fit_policy,
    load_rla,
    mask_actions,
    rla_latents,
    select_episodes,
)
from rla_gym.utils import load_json, provenance, save_json
from rla_gym.utils.stats import wilson_interval

SUITES = {"libero": ("libero", "libero_object/0"), "lift": ("robosuite", "Lift")}
METHODS = ("bc", "bc+rla")


@dataclass(frozen=True)
class Args:
    suites: tuple[str, ...] = ("libero", "lift")
    """suites to run: libero (libero_object/0), lift (robosuite Lift)"""
    libero_data: Path = Path("data/libero_object_0")
    """LIBERO dataset with cached features"""
    libero_rla: Path = Path("runs/rla_residual/checkpoint")
    """frozen RLA checkpoint trained on the LIBERO dataset's features"""
    lift_data: Path = Path("data/robosuite_lift")
    """robosuite Lift dataset with cached features"""
    lift_rla: Path = Path("runs/bundle/robosuite-lift/rla/checkpoint")
    """frozen RLA checkpoint trained on the Lift dataset's features"""
    encoder: str = "opennsfw-resnet50-res4"
    """encoder of the cached features (and of the real-simulator observations)"""
    seeds: tuple[int, ...] = (0, 1, 2)
    """seeds: each draws its own labelled episodes and initial weights"""
    labelled: int = 5
    """labelled expert episodes per seed"""
    videos: tuple[str, ...] = ("expert", "noisy")
    """policies whose other train-split episodes are the action-free videos"""
    chunk: int = 8
    """control steps per decision K (and the RLA gap)"""
    steps: int = 2000
    """optimizer steps of each policy (equal for both methods)"""
    batch_size: int = 32
    """labelled rows per step (BC + RLA adds as many video rows)"""
    latent_weight: float = 0.3
    """weight of the RLA-head loss"""
    episodes: int = 20
    """real-simulator episodes per policy"""
    workers: int = 2
    """simulator processes"""
    eval_seed: int = 0
    """base seed of seeded resets (robosuite)"""
    runs: Path = Path("runs/world_action_model")
    """where the trained policies are kept (reused on resume)"""
    out: Path = Path("benchmarks/results/world_action_model.json")


def _protocol(args: Args) -> dict[str, Any]:
    """The settings every entry of one results file must share."""
    keep = (
        "encoder",
        "labelled",
        "videos",
        "chunk",
        "steps",
        "batch_size",
        "latent_weight",
        "episodes",
        "eval_seed",
    )
    return {k: getattr(args, k) for k in keep} | {"videos": list(args.videos)}


def _train(
    policy_dir: Path,
    obs: np.ndarray,
    actions: np.ndarray,
    latents: np.ndarray | None,
    args: Args,
    seed: int,
    info: dict[str, Any],
) -> dict[str, Any]:
    """Train (or reuse) one policy; returns its meta."""
    meta_path = policy_dir / "meta.json"
    if (policy_dir / "model.safetensors").exists() and meta_path.exists():
        meta = load_json(meta_path)
        if meta.get("protocol") == _protocol(args) and meta.get("seed") == seed:
            return meta
    cfg = BCConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        latent_weight=args.latent_weight,
        val_fraction=0.0,
        seed=seed,
    )
    t0 = time.perf_counter()
    policy, bc = fit_policy(obs, actions, latents, cfg, seed, device="cpu")
    meta = {
        **info,
        "protocol": _protocol(args),
        "seed": seed,
        "train_wall_clock_s": time.perf_counter() - t0,
        "train_action_loss": bc.train_losses[-1],
        "train_latent_loss": bc.latent_losses[-1] if bc.latent_losses else None,
        "parameters": sum(p.numel() for p in policy.parameters()),
    }
    policy.save(policy_dir, meta=meta)
    return meta


def _run_suite(suite: str, args: Args, result: dict[str, Any]) -> None:
    sim, task = SUITES[suite]
    data, rla_path = (
        (args.libero_data, args.libero_rla)
        if suite == "libero"
        else (args.lift_data, args.lift_rla)
    )
    todo = [
        (s, m) for s in args.seeds for m in METHODS if f"{suite}/{s}/{m}" not in result["entries"]
    ]
    if not todo:
        return
    store = EpisodeStore(data)
    rla = load_rla(rla_path, store, args.encoder)  # fail before any work if it does not fit
    # One load per suite: every train-split expert and video episode with its actions; each seed
    # then hides the actions of all but its labelled episodes.
    pool = select_episodes(store, None, "expert", args.videos)
    chunks = load_chunks(store, pool.labelled + pool.videos, args.chunk, args.encoder)
    t0 = time.perf_counter()
    latents = rla_latents(rla, chunks.obs, chunks.next_obs)
    print(
        f"{suite}: {len(chunks)} rows, RLA latents in {time.perf_counter() - t0:.0f} s", flush=True
    )
    heldout = load_chunks(store, pool.heldout, args.chunk, args.encoder)
    obs = chunks.obs
    empty = np.empty((0, *obs.shape[1:]), obs.dtype)
    chunks = dataclasses.replace(chunks, next_obs=empty)  # free the t + K frames
    for seed in args.seeds:
        sel = select_episodes(store, args.labelled, "expert", args.videos, seed=seed)
        actions = mask_actions(chunks, sel.labelled)
        info = {
            "suite": suite,
            "labelled_episodes": list(sel.labelled),
            "video_episodes": len(sel.videos),
            "labelled_rows": int(np.isfinite(actions).all(1).sum()),
            "video_rows": int((~np.isfinite(actions).all(1)).sum()),
            "rla": str(rla_path),
            "rla_fingerprint": rla.config.encoder_fingerprint,
        }
        for method in METHODS:
            key = f"{suite}/{seed}/{method}"
            if key in result["entries"]:
                continue
            policy_dir = args.runs / suite / f"seed{seed}" / method
            meta = _train(
                policy_dir,
                obs,
                actions,
                latents if method == "bc+rla" else None,
                args,
                seed,
                {**info, "method": method},
            )
            mse = action_mse(ActorCritic.load(policy_dir), heldout.obs, heldout.actions)
            ev = evaluate_in_sim(
                SavedPolicy(str(policy_dir)),
                RealEvalConfig(
                    sim=sim,
                    task=task,
                    encoder=args.encoder,
                    episodes=args.episodes,
                    chunk=args.chunk,
                    workers=args.workers,
                    seed=args.eval_seed,
                ),
            )
            entry = {
                **meta,
                "policy": str(policy_dir),
                "heldout_episodes": len(pool.heldout),
                "heldout_action_mse": mse,
                "successes": ev["successes"],
                "episodes": ev["episodes"],
                "success_rate": ev["success_rate"],
                "wilson95": ev["wilson95"],
                "mean_length": ev["mean_length"],
                "failed": [r["index"] for r in ev["rows"] if not r["success"]],
                "eval_wall_clock_s": ev["wall_clock_s"],
            }
            result["entries"][key] = entry
            print(
                f"{key}: {ev['successes']}/{ev['episodes']} real successes, held-out MSE {mse:.5f}",
                flush=True,
            )
            _save(result, args)


def _summary(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per suite and method: successes pooled over seeds, Wilson interval, MSE mean and spread."""
    rows: dict[str, Any] = {}
    for e in entries.values():
        r = rows.setdefault(
            f"{e['suite']}/{e['method']}",
            {
                "suite": e["suite"],
                "method": e["method"],
                "seeds": [],
                "per_seed": [],
                "successes": 0,
                "episodes": 0,
                "mse": [],
            },
        )
        r["seeds"].append(e["seed"])
        r["per_seed"].append(f"{e['successes']}/{e['episodes']}")
        r["successes"] += e["successes"]
        r["episodes"] += e["episodes"]
        r["mse"].append(e["heldout_action_mse"])
    for r in rows.values():
        r["success_rate"] = r["successes"] / max(1, r["episodes"])
        r["wilson95"] = list(wilson_interval(r["successes"], r["episodes"]))
        r["heldout_action_mse"] = float(np.mean(r["mse"]))
        r["heldout_action_mse_std"] = float(np.std(r["mse"]))
        del r["mse"]
    gains = {}
    for suite in {r["suite"] for r in rows.values()}:
        a, b = rows.get(f"{suite}/bc"), rows.get(f"{suite}/bc+rla")
        if a and b and sorted(a["seeds"]) == sorted(b["seeds"]):
            gains[suite] = 100 * (b["success_rate"] - a["success_rate"])
    return {
        "rows": list(rows.values()),
        "gain_points": gains,
        "mean_gain_points": float(np.mean(list(gains.values()))) if gains else None,
    }


def _save(result: dict[str, Any], args: Args) -> None:
    result["summary"] = _summary(result["entries"])
    result["provenance"] = provenance(seed=list(args.seeds), encoder=args.encoder, device="cpu")
    save_json(result, args.out)


def main(args: Args) -> dict[str, Any]:
    result: dict[str, Any] = {"protocol": _protocol(args), "entries": {}}
    if args.out.exists():
        result = load_json(args.out)
        if result.get("protocol") != _protocol(args):
            raise SystemExit(
                f"{args.out} holds results of other settings ({result.get('protocol')}); pass "
                f"the same settings to resume, or another --out"
            )
    unknown = sorted(set(args.suites) - set(SUITES))
    if unknown:
        raise SystemExit(f"unknown suites {unknown}; choose from {sorted(SUITES)}")
    for suite in args.suites:
        _run_suite(suite, args, result)
    _save(result, args)
    for r in result["summary"]["rows"]:
        lo, hi = r["wilson95"]
        print(
            f"{r['suite']:7s} {r['method']:7s} {r['successes']}/{r['episodes']} "
            f"[{100 * lo:.0f}, {100 * hi:.0f}] %  MSE {r['heldout_action_mse']:.5f}"
        )
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
