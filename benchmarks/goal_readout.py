"""What limits a reacher policy trained from scratch in the dream: its goal, or its control?

A policy that reads the scene through the bundle's goal readout (``SB3GoalExtractor``: the
effector-goal progress head's place for the fingertip, or a joint-space head's goal angles, the
body's, their gap, the body; ``rl_in_dream_reacher.py --policy-input goal``) is judged three ways
on the same real starts
(seeds ``eval_seed + i``, the bundle's horizon, success = the finger touches the target at some
control step):

* **real**: as trained, the goal read off the real features;
* **real, true goal**: the same policy told where the target really is (dm-control's target
  position; for a joint-space head the joint angles that reach it, the elbow nearest the arm's
  at the start; standardised as the head standardises its goals): what a perfect readout would
  add;
* **imagined**: closed loop in the dream from the same start (the encoded first frame and the
  real body), the bundle's success estimate, the dream's flow noise seeded per start.

Also the readout's error at the start (metres from the real target; a joint-space goal is
placed by forward kinematics) and how far the goal read
off the features moves during an episode, in reality (where the target stands still) and in the
dream. A policy as good with the true goal as with its readout, and as good in the dream as in
reality, is limited by what its optimiser found in the dream.

Writes ``benchmarks/results/goal_readout.json``:
``{"policies": {name: {"real": {"success", "episodes"}, "real_true_goal": {...}, "imagined": {...},
"readout_error_m": {"mean", "median"}, "goal_drift_m": {"real", "dream"}, "bundle",
"bundle_created_utc"}}}``.

    python benchmarks/goal_readout.py --policies seed0=<ppo.zip> --artifacts <bundle>  # ~3 min
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import tyro

import rla_gym  # noqa: F401  (registers the RLAWorld-* ids)
from rla_gym.data.proprio import body_vector, effector_position
from rla_gym.envs.real import RealFeatureEnv
from rla_gym.envs.rla_world import resolve_artifacts
from rla_gym.sb3 import SB3GoalExtractor
from rla_gym.sims.kinematics import two_link_ik
from rla_gym.utils import load_json, provenance, save_json
from rla_gym.utils.checkpoint import load_sb3_model
from rla_gym.utils.stats import wilson_interval

DREAM_ID = "RLAWorld-dmc-reacher-v0"


@dataclass(frozen=True)
class Args:
    policies: tuple[str, ...]
    """``name=path`` of SB3 zips whose features extractor is an SB3GoalExtractor (an
    effector-goal head, or a joint-space head on reacher's joint angles)"""
    artifacts: str | None = None
    """the reacher bundle the policies were trained in (default: the embedded one)"""
    episodes: int = 50
    """real starts (seeds eval_seed + i), each also dreamed"""
    eval_seed: int = 10_000
    """first real seed (rl_in_dream_reacher.py's)"""
    flow_steps: int = 5
    """Euler steps per dreamed chunk"""
    out: Path = Path("benchmarks/results/goal_readout.json")


def _policy(path: str) -> tuple[Any, SB3GoalExtractor]:
    """The SB3 model and its goal readout.

    Raises:
        ValueError: a policy that does not read a goal readout that places the fingertip.
    """
    model = load_sb3_model(path)
    ext = model.policy.features_extractor
    if not isinstance(ext, SB3GoalExtractor):
        raise ValueError(
            f"{path} does not read the scene through a goal readout (SB3GoalExtractor); train it "
            "with rl_in_dream_reacher.py --policy-input goal"
        )
    _place(ext, torch.zeros(1, ext.head.config.goal_dim))  # refuses a goal with no place
    return model, ext


def _place(ext: SB3GoalExtractor, goal: torch.Tensor) -> torch.Tensor:
    """Standardised goals ``(B, G)`` -> the fingertip places ``(B, 2)`` (metres) they mean.

    Raises:
        ValueError: a joint-space goal without the arm's angles (no place to read).
    """
    head = ext.head
    if head.config.goal_space == "effector":
        return head.raw_goal(goal)
    return effector_position(head.goal_field_names, head.raw_goal(goal))


@contextmanager
def told_goal(ext: SB3GoalExtractor, place: np.ndarray, joints: np.ndarray) -> Iterator[None]:
    """The policy's readout answers the real target ``place (2,)`` (metres) or, for a
    joint-space head, ``joints (2,)``, the angles that reach it, standardised as the head
    standardises its goals, whatever the features show."""
    head = ext.head
    if head.config.goal_space == "effector":
        place_t = torch.as_tensor(place, dtype=torch.float32)
        goal = (place_t - head.effector_mean) / head.effector_std
    else:  # the body at those angles (at rest), in the goal's standardised space
        body = body_vector("dmc", np.array([joints[0], joints[1], 0.0, 0.0]))
        goal = head.goal_of(torch.as_tensor(body)[None])[0]
    head.predict_goal = lambda s: goal.expand(len(s), -1)  # type: ignore[method-assign]
    try:
        yield
    finally:
        del head.predict_goal  # the class's method again


def _readout_m(ext: SB3GoalExtractor, features: np.ndarray) -> np.ndarray:
    """The place ``(2,)`` the readout reads off ``(N, D)`` features, in metres."""
    head = ext.head
    with torch.no_grad():
        g = head.predict_goal(torch.as_tensor(features, dtype=torch.float32)[None])
        return _place(ext, g)[0].numpy()


def _act(model: Any, obs: dict[str, np.ndarray]) -> np.ndarray:
    return model.predict({k: v[None] for k, v in obs.items()}, deterministic=True)[0][0]


def _rate(hits: list[bool]) -> dict[str, Any]:
    k, n = int(sum(hits)), len(hits)
    return {"success": k, "episodes": n, "wilson95": list(wilson_interval(k, n))}


def measure(path: str, args: Args, bundle: Path) -> dict[str, Any]:
    """One policy's three judgements on the same starts (see the module docstring)."""
    man = load_json(bundle / "manifest.json")
    model, ext = _policy(path)
    steps = int(man["max_episode_steps"])
    real = RealFeatureEnv(sim=man["sim"], task=man["task"], resolution=int(man["resolution"]),
                          encoder=man["encoder"], chunk=int(man["chunk"]), action_mode="repeat",
                          max_episode_steps=steps, obs_mode="features+proprio")  # fmt: skip
    dream = gym.make(DREAM_ID, artifacts=str(bundle), action_mode="repeat",
                     obs_mode="features+proprio", flow_steps=args.flow_steps)  # fmt: skip
    hits: dict[str, list[bool]] = {"real": [], "real_true_goal": [], "imagined": []}
    err, drift_real, drift_dream = [], [], []
    try:
        for i in range(args.episodes):
            seed = args.eval_seed + i
            for told in (False, True):
                obs, info = real.reset(seed=seed)
                start = obs
                target = real.sim.physics.named.data.geom_xpos["target", :2].copy()
                joints = two_link_ik(target, real.sim.physics.data.qpos[:2].copy())
                first = _readout_m(ext, obs["features"])
                ok = bool(info["success"])
                with told_goal(ext, target, joints) if told else nullcontext():
                    for _ in range(steps):
                        obs, _r, term, trunc, info = real.step(_act(model, obs))
                        ok = ok or bool(info.get("success"))
                        if term or trunc:
                            break
                hits["real_true_goal" if told else "real"].append(ok)
                if not told:
                    err.append(float(np.linalg.norm(first - target)))
                    drift_real.append(
                        float(np.linalg.norm(_readout_m(ext, obs["features"]) - first))
                    )
            opts = {"start": "features", "features": start["features"], "proprio": start["proprio"]}
            obs, _ = dream.reset(seed=seed, options=opts)
            ok = False
            for _ in range(steps):
                obs, _r, term, trunc, info = dream.step(_act(model, obs))
                ok = ok or bool(info.get("is_success_estimate"))
                if term or trunc:
                    break
            hits["imagined"].append(ok)
            drift_dream.append(float(np.linalg.norm(_readout_m(ext, obs["features"]) - first)))
            print(f"[{i}] real {hits['real'][-1]}, true goal {hits['real_true_goal'][-1]}, "
                  f"imagined {ok}, readout error {err[-1]:.3f} m", flush=True)  # fmt: skip
    finally:
        real.close()
        dream.close()
    return {
        **{k: _rate(v) for k, v in hits.items()},
        "readout_error_m": {"mean": float(np.mean(err)), "median": float(np.median(err))},
        "goal_drift_m": {"real": float(np.mean(drift_real)), "dream": float(np.mean(drift_dream))},
        "per_episode": {k: [bool(x) for x in v] for k, v in hits.items()},
        "policy": path,
        "bundle": str(bundle),
        "bundle_created_utc": man["created_utc"],
    }


def main(args: Args) -> dict[str, Any]:
    torch.set_num_threads(1)
    bundle = resolve_artifacts(args.artifacts, "dmc-reacher")
    man = load_json(bundle / "manifest.json")
    result = load_json(args.out) if args.out.exists() else {"policies": {}}
    for spec in args.policies:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--policies takes name=path, got {spec!r}")
        row = measure(path, args, bundle)
        result["policies"][name] = row
        result.update(
            provenance=provenance(seed=args.eval_seed, encoder=man["encoder_fingerprint"],
                                  device="cpu"),
            eval_seeds=[args.eval_seed, args.eval_seed + args.episodes - 1],
            flow_steps=args.flow_steps,
        )  # fmt: skip
        save_json(result, args.out)
        r = {k: f"{row[k]['success']}/{row[k]['episodes']}" for k in
             ("real", "real_true_goal", "imagined")}  # fmt: skip
        print(f"{name}: {r}; readout error {row['readout_error_m']['median']:.3f} m (median)",
              flush=True)  # fmt: skip
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
