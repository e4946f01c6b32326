"""Where does the dream put the robot's body under a policy's own actions? World-model body head
against the bundle's body model (``rla-gym train-body`` / ``add-body-model``).

A policy is run in the real simulator from held-out starts (seeds ``eval_seed + i``, apart from the
RL arms' 10000+); its actions are then replayed open loop in the dream from the same start (the
encoded first frame and the real body), once with each body source
(``RLAWorldConfig.body_dynamics``: ``world_model``, the world model's body head; ``body_model``,
the bundle's body dynamics). Per chunk: how far the dreamed effector is from the real one (metres;
reacher's fingertip, a Panda's end effector) and the R² of the dreamed body vector against the real
one. A body that drifts a touch's width from the real one teaches a policy control for a body that
does not exist.

Writes ``benchmarks/results/body_dynamics.json``: ``{"bundles": {suite: {"sources": {source:
{"effector_gap_m": [per chunk], "body_r2": [per chunk]}}, "real_success", "episodes", "policy",
"bundle", "body_model"}}}``.

    python benchmarks/body_dynamics.py --artifacts <bundle with body/> --policy <ppo.zip>  # ~2 min
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import tyro

import rla_gym  # noqa: F401  (registers the RLAWorld-* ids)
from rla_gym.data.proprio import effector_position
from rla_gym.envs import SUITE_IDS
from rla_gym.envs.real import RealFeatureEnv
from rla_gym.utils import load_json, provenance, save_json
from rla_gym.utils.checkpoint import load_sb3_model
from rla_gym.utils.stats import r2_score

SOURCES = ("world_model", "body_model")
SIM_SUITES = {"dmc": "dmc-reacher", "robosuite": "robosuite-lift", "libero": "libero"}
"""A bundle's simulator -> its suite (the env id and the result's key)."""


@dataclass(frozen=True)
class Args:
    artifacts: str
    """a bundle whose world model dreams the body and that ships a body model (``body/``)"""
    policy: str
    """an SB3 zip that reads ``{"features", "proprio"}`` and acts one held action per chunk
    (``rl_in_dream_reacher.py``'s PPO arms), or ``random`` (uniform held actions)"""
    episodes: int = 20
    """real episodes (seeds eval_seed + i)"""
    eval_seed: int = 20_000
    """first real seed: apart from the RL arms' 10000+"""
    flow_steps: int = 5
    seed: int = 0
    """the random policy's draws"""
    out: Path = Path("benchmarks/results/body_dynamics.json")


def main(args: Args) -> dict[str, Any]:
    torch.set_num_threads(1)
    man = load_json(Path(args.artifacts) / "manifest.json")
    suite = SIM_SUITES[man["sim"]]
    if not man.get("body"):
        raise ValueError(
            f"{args.artifacts} ships no body model; add one with rla-gym add-body-model"
        )
    steps = int(man["max_episode_steps"])
    real = RealFeatureEnv(sim=man["sim"], task=man["task"], resolution=int(man["resolution"]),
                          encoder=man["encoder"], chunk=int(man["chunk"]), action_mode="repeat",
                          max_episode_steps=steps, obs_mode="features+proprio")  # fmt: skip
    dreams = {s: gym.make(SUITE_IDS[suite], artifacts=args.artifacts, action_mode="repeat",
                          obs_mode="features+proprio", flow_steps=args.flow_steps,
                          body_dynamics=s) for s in SOURCES}  # fmt: skip
    fields = tuple(man["proprio"]["fields"])
    rng = np.random.default_rng(args.seed)
    model = None if args.policy == "random" else load_sb3_model(args.policy)

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        if model is None:
            return rng.uniform(-1, 1, real.action_space.shape).astype(np.float32)
        return model.predict({k: v[None] for k, v in obs.items()}, deterministic=True)[0][0]

    real_body, dream_body = [], {s: [] for s in SOURCES}
    hits = []
    try:
        for i in range(args.episodes):
            obs, info = real.reset(seed=args.eval_seed + i)
            start, actions, bodies, ok = obs, [], [], bool(info["success"])
            for _ in range(steps):
                actions.append(act(obs))
                obs, _r, term, trunc, info = real.step(actions[-1])
                bodies.append(obs["proprio"].copy())
                ok = ok or bool(info.get("success"))
                if term or trunc:
                    break
            if len(bodies) < steps:
                continue  # ended early: no body to compare at every chunk
            hits.append(ok)
            real_body.append(np.stack(bodies))
            for s, env in dreams.items():
                opts = {"start": "features", "features": start["features"],
                        "proprio": start["proprio"]}  # fmt: skip
                env.reset(seed=args.eval_seed + i, options=opts)
                dream_body[s].append(np.stack([env.step(a)[0]["proprio"].copy() for a in actions]))
    finally:
        real.close()
        for env in dreams.values():
            env.close()
    y = np.stack(real_body)  # (E, H, P)
    sources = {}
    for s in SOURCES:
        p = np.stack(dream_body[s])
        gap = np.linalg.norm(effector_position(fields, p) - effector_position(fields, y), axis=-1)
        r2 = [r2_score(p[:, h], y[:, h]) for h in range(y.shape[1])]
        sources[s] = {"effector_gap_m": gap.mean(0).tolist(), "body_r2": r2}
        print(f"{s}: effector gap per chunk (cm) {[round(100 * g, 1) for g in gap.mean(0)]}, "
              f"body R² {[round(x, 3) for x in r2]}", flush=True)  # fmt: skip
    result = load_json(args.out) if args.out.exists() else {"bundles": {}}
    result["bundles"][suite] = {
        "sources": sources,
        "real_success": int(sum(hits)),
        "episodes": len(hits),
        "eval_seeds": [args.eval_seed, args.eval_seed + args.episodes - 1],
        "policy": args.policy,
        "bundle": args.artifacts,
        "bundle_created_utc": man["created_utc"],
        "body_model": man["body"],
        "flow_steps": args.flow_steps,
        "provenance": provenance(seed=args.seed, encoder=man["encoder_fingerprint"], device="cpu"),
    }
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
