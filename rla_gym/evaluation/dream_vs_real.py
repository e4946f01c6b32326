"""Can the dream rank policies? Imagined vs real return and success from the same real starts.

Every policy runs the bundle's horizon (``E`` chunks of ``K`` control steps) from the same starts
in both worlds:

* **real**: start ``i`` is the real simulator reset from LIBERO init state ``i`` or, elsewhere,
  seed ``seed + i`` (the episodes of ``evaluate_in_sim``); the frame at every chunk boundary is
  encoded with the bundle's encoder; success = the simulator's success at any control step;
* **imagined**: the dreamed env starts from the *encoded real first frame* of that episode
  (``options={"start": "features"}``), aligned with the reference demo whose first frame is
  nearest; env ``i`` draws its flow noise from seed ``seed + i`` for every policy; success = the
  env's success estimate at any chunk.

Both feature trajectories are then scored by every reward mode (``aligned``, ``goal``,
``progress``) with :meth:`~rla_gym.envs.rla_world.DreamCore.score` against the same reference
demo, so one set of rollouts gives every mode and the two returns of a mode are in the same units.
The reward never changes the dream: policies see features only.

Policy kinds: ``random``, ``expert`` and ``noisy`` are scripted (:func:`~rla_gym.evaluation.
scripted.run_scripted_episode`: seeded uniform actions, the privileged expert, the expert with
action noise); they act in the real simulator and their recorded normalised actions are replayed
open loop in the dream, which has no privileged state. ``saved`` is an
:class:`~rla_gym.agents.ActorCritic` folder, closed loop on features in both worlds
(:func:`~rla_gym.evaluation.real.rollout` in the real one). Spearman rank correlations over
policies say whether the dream orders policies as reality does.

The real episodes (simulator processes, the on-disk episode cache) are
:mod:`rla_gym.evaluation.real_episodes`; this module dreams, scores and compares.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rla_gym.evaluation.real_episodes import SCRIPTED, PolicySpec, RealJob, real_rollouts
from rla_gym.utils.stats import spearman, wilson_interval

# PolicySpec, RealJob and real_rollouts live in evaluation.real_episodes (the real half); they
# are re-exported here, the comparison's one import path for benchmarks and tests.
__all__ = [
    "MODES",
    "PolicySpec",
    "RealJob",
    "choose_mode",
    "compare",
    "dream_rollouts",
    "graded_policies",
    "real_rollouts",
    "score_modes",
    "spearman",
    "summarize",
]

MODES: tuple[str, ...] = ("aligned", "goal", "progress")
"""The dreamed env's reward modes, in the order they are reported."""


def graded_policies(
    bundle: str | Path, noises: tuple[float, ...] = (0.6, 0.3, 0.1)
) -> list[PolicySpec]:
    """Random, the noisy expert at each of ``noises``, the clean expert and the bundle's BC
    policy (if it ships one): policies of graded quality, worst first by intent."""
    specs = [PolicySpec("random", "random")]
    specs += [PolicySpec(f"noisy-{n:g}", "noisy", noise=n) for n in noises]
    specs.append(PolicySpec("expert", "expert"))
    if (Path(bundle) / "policy" / "model.safetensors").exists():
        specs.append(PolicySpec("bc", "saved", str(Path(bundle) / "policy")))
    return specs


# --------------------------------------------------------------------------- dream side
@torch.no_grad()
def dream_rollouts(
    venv: Any,
    starts: list[int] | None = None,
    policy: Any = None,
    actions: np.ndarray | None = None,
    seed: int | Sequence[int] = 0,
    *,
    features: np.ndarray | None = None,
    proprio: np.ndarray | None = None,
    keep_features: bool = False,
) -> dict[str, np.ndarray]:
    """Full-horizon rollouts in a dreamed vector env, one per env.

    Args:
        venv: an :class:`~rla_gym.envs.RLAWorldVectorEnv` with ``B`` envs.
        starts: ``B`` reset-bank indices, or
        features: ``float32 (B, N, D)`` start features (``options={"start": "features"}``; the
            reward aligns with the nearest reference demo).
        proprio: ``float32 (B, P)`` the robot's body at ``features``, for a bundle whose world
            model dreams it (refused by one that does not).
        policy: an object with ``predict(obs_batch, deterministic=True)`` (closed loop), or
        actions: ``float32 (B, E, K * A)`` chunks to replay open loop.
        seed: env ``i`` draws its flow noise from seed ``seed + i``, or from ``seed[i]`` (``B``
            seeds: envs given one seed share a start's noise, e.g. to pair two policies).
        keep_features: also return the dreamed features (and body) after every chunk.

    Returns:
        ``rewards (B, E)``, ``success (B, E)`` (estimate per step), ``demo (B,)``, with the
        env's ``num_uncertainty_samples >= 2`` also ``uncertainty (B, E)`` (the spread of its
        flow samples at every step), and, if asked, ``features`` (``float32 (B, E, N, D)``)
        and, for a dream of the body, ``body`` (``float32 (B, E, P)``).
    """
    b, horizon = venv.num_envs, venv.max_episode_steps
    if (starts is None) == (features is None):
        raise ValueError("pass exactly one of starts and features")
    if proprio is not None and features is None:
        raise ValueError("proprio goes with features (the body at those start features)")
    if (policy is None) == (actions is None):
        raise ValueError("pass exactly one of policy and actions")
    if actions is not None and actions.shape[:2] != (b, horizon):
        raise ValueError(f"actions must be (B={b}, E={horizon}, K*A), got {actions.shape}")
    seeds = [seed + j for j in range(b)] if isinstance(seed, int) else [int(x) for x in seed]
    if len(seeds) != b:
        raise ValueError(f"{len(seeds)} seeds for {b} envs")
    if features is not None:
        options = {"start": "features", "features": features}
        if proprio is not None:
            options["proprio"] = proprio
        obs, info = venv.reset(seed=seeds, options=options)
    else:
        assert starts is not None
        if len(starts) != b:
            raise ValueError(f"{len(starts)} starts for {b} envs")
        for i, index in enumerate(starts):
            mask = np.zeros(b, bool)
            mask[i] = True
            obs, info = venv.reset(
                seed=seeds,
                options={"reset_mask": mask, "start": "init", "index": index},
            )
    demo = np.asarray(info["demo"])
    rewards, success = np.zeros((b, horizon)), np.zeros((b, horizon), bool)
    kept, bodies, spread = [], [], []
    for e in range(horizon):
        act = policy.predict(obs, deterministic=True)[0] if actions is None else actions[:, e]
        obs, reward, _, _, info = venv.step(act)
        rewards[:, e] = reward
        success[:, e] = info["is_success_estimate"]
        if "uncertainty" in info:
            spread.append(np.asarray(info["uncertainty"], dtype=np.float64))
        if keep_features:
            kept.append(venv.state_features.float().cpu().numpy())
            if venv.state_body is not None:
                bodies.append(venv.state_body.float().cpu().numpy())
    out = {"rewards": rewards, "success": success, "demo": demo}
    if spread:
        out["uncertainty"] = np.stack(spread, 1)
    if keep_features:
        out["features"] = np.stack(kept, 1)
        if bodies:
            out["body"] = np.stack(bodies, 1)
    return out


def score_modes(
    cores: dict[str, Any],
    features: np.ndarray,
    demo: np.ndarray,
    body: np.ndarray | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Every mode's reward and success estimate of feature trajectories.

    Args:
        cores: ``{mode: DreamCore}`` built with that ``reward_mode``.
        features: ``(B, E, N, D)`` features after chunks ``1..E``.
        demo: ``(B,)`` reference demo of each trajectory.
        body: ``(B, E, P)`` the body at the same frames, read by a progress head that reads it.

    Returns:
        ``{mode: {"rewards": (B, E), "success": (B, E)}}``: what a dreamed env in that mode pays
        and estimates for these features (chunk ``e`` is scored at control step ``(e + 1) K``).
    """
    b, horizon = features.shape[:2]
    demo_t = torch.as_tensor(np.asarray(demo), dtype=torch.long)
    out = {}
    for mode, core in cores.items():
        rewards, success = np.zeros((b, horizon)), np.zeros((b, horizon), bool)
        for e in range(horizon):
            s = torch.from_numpy(np.ascontiguousarray(features[:, e], np.float32)).to(core.device)
            p = None if body is None else torch.from_numpy(np.asarray(body[:, e], np.float32))
            r, terms = core.score(s, demo_t, np.full(b, (e + 1) * core.chunk), p)
            rewards[:, e], success[:, e] = r, terms["is_success_estimate"]
        out[mode] = {"rewards": rewards, "success": success}
    return out


# --------------------------------------------------------------------------- comparison
def compare(
    bundle: str | Path,
    specs: list[PolicySpec],
    num_starts: int = 20,
    workers: int = 1,
    flow_steps: int = 10,
    seed: int = 0,
    device: str = "cpu",
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Imagined vs real return and success of every policy, in every reward mode.

    Args:
        bundle: the dreamed env's bundle (its manifest names the real simulator and encoder).
        specs: the policies (at least 3 for a rank correlation).
        num_starts: real starts ``0..num_starts-1``.
        workers: real-simulator processes.
        flow_steps: Euler steps per dreamed chunk.
        seed: real reset seeds ``seed + i``, flow seeds ``seed + i``.
        device: dream device.
        cache_dir: real-episode cache (see :func:`real_rollouts`).
        progress: show progress bars.

    Returns:
        ``modes``: per mode the per-policy rows (``imagined`` / ``real`` :func:`summarize`
        dicts; ``real`` adds ``sim_return`` and ``estimate_successes``, the success estimate on
        the real features) and the Spearman correlations of :func:`_rank_stats`;
        ``reward_mode``: the mode :func:`choose_mode` picks; ``starts``, ``demos``, ``horizon``,
        ``chunk``, ``real_wall_clock_s`` (episodes run now), ``real_episode_s`` (mean over all,
        cached ones included) and ``wall_clock_s``.
    """
    from rla_gym.agents import ActorCritic
    from rla_gym.envs.config import RLAWorldConfig
    from rla_gym.envs.core import DreamCore
    from rla_gym.envs.vector import RLAWorldVectorEnv

    t0 = time.perf_counter()
    cfg = RLAWorldConfig(artifacts=str(bundle), device=device, flow_steps=flow_steps)
    venv = RLAWorldVectorEnv(num_starts, config=cfg)
    core = venv.core
    man = core.manifest
    job = RealJob(
        man["sim"],
        man["task"],
        int(man["resolution"]),
        man["encoder"],
        core.chunk,
        venv.max_episode_steps,
        seed,
    )
    indices = list(range(num_starts))
    real = real_rollouts(job, specs, indices, workers, cache_dir, progress)
    t_real = time.perf_counter() - t0
    modes = [m for m in MODES if m != "progress" or core.art.has_progress_head]
    cores = {m: DreamCore(dataclasses.replace(cfg, reward_mode=m)) for m in modes}
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    demos = None
    # A dream that carries the body starts from the real start's body, and its reward reads
    # the dreamed body where the real frames are scored with the real one.
    dreams_body = core.body_dim > 0
    for spec in specs:
        eps = [real[(spec.name, i)] for i in indices]
        first = np.stack([e["features"][0] for e in eps]).astype(np.float32)
        body = np.stack([e["body"] for e in eps]).astype(np.float32) if dreams_body else None
        how: dict[str, Any] = (
            {"actions": np.stack([e["actions"] for e in eps])}
            if spec.scripted
            else {"policy": ActorCritic.load(spec.path).eval()}
        )
        dream = dream_rollouts(
            venv,
            seed=seed,
            features=first,
            proprio=None if body is None else body[:, 0],
            keep_features=True,
            **how,
        )
        demos = dream["demo"]
        imagined = score_modes(cores, dream["features"], demos, dream.get("body"))
        real_f = np.stack([e["features"][1:] for e in eps]).astype(np.float32)
        scored = score_modes(cores, real_f, demos, None if body is None else body[:, 1:])
        real_success = np.stack([e["chunk_success"] for e in eps]).any(1)
        sim_return = float(np.mean([float(e["sim_return"]) for e in eps]))
        for m in modes:
            im, re = imagined[m], scored[m]
            rows[m].append(
                {
                    "name": spec.name,
                    "kind": spec.kind,
                    "noise": spec.noise,
                    "path": spec.path,
                    "imagined": summarize(im["rewards"].sum(1), im["success"].any(1)),
                    "real": {
                        **summarize(re["rewards"].sum(1), real_success),
                        "sim_return": sim_return,
                        "estimate_successes": int(re["success"].any(1).sum()),
                    },
                }
            )
    venv.close()
    out: dict[str, Any] = {
        "modes": {m: {**_rank_stats(rows[m]), "policies": rows[m]} for m in modes},
        "starts": indices,
        "demos": None if demos is None else demos.tolist(),
        "horizon": job.horizon,
        "chunk": job.chunk,
        "sim": job.sim,
        "task": job.task,
        "real_wall_clock_s": t_real,
        "real_episodes_run": sum(not r["cached"] for r in real.values()),
        "real_episode_s": float(np.mean([float(r["seconds"]) for r in real.values()])),
    }
    out["reward_mode"] = choose_mode(out["modes"])
    out["wall_clock_s"] = time.perf_counter() - t0
    return out


def _rank_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rank correlations of imagined against real outcomes.

    Over policies: mean return, success rate, imagined return against real success rate, the
    return among scripted and among closed-loop policies alone (``None`` below 3), with
    bootstrap intervals; over all (policy, start) episodes: return (Spearman and Pearson); and
    the mean over starts of the correlation over policies at that start (``within_start``).
    """
    im_r = [p["imagined"]["mean_return"] for p in rows]
    re_r = [p["real"]["mean_return"] for p in rows]
    im_s = [p["imagined"]["success_rate"] for p in rows]
    re_s = [p["real"]["success_rate"] for p in rows]
    im_e = np.array([p["imagined"]["returns"] for p in rows])  # (policies, starts)
    re_e = np.array([p["real"]["returns"] for p in rows])
    pearson = None
    if np.ptp(im_e) > 0 and np.ptp(re_e) > 0:
        pearson = float(np.corrcoef(im_e.ravel(), re_e.ravel())[0, 1])
    # Open-loop replays of scripted policies and closed-loop feature policies apart: the first
    # asks whether the dream tells action sequences apart, the second whether it can judge a
    # policy that reacts to the dreamed features (what RL in the dream needs).
    groups = {}
    for group, kinds in (("scripted", SCRIPTED), ("closed_loop", ("saved",))):
        sub = [i for i, p in enumerate(rows) if p["kind"] in kinds]
        groups[f"spearman_return_{group}"] = spearman(
            [im_r[i] for i in sub], [re_r[i] for i in sub]
        )
    # Episodes of one start share its scene and reference demo, which dominate the over-episode
    # correlation; ranking the policies start by start removes that.
    within = [
        rho for j in range(im_e.shape[1]) if (rho := spearman(im_e[:, j], re_e[:, j])) is not None
    ]
    return {
        "spearman_return": spearman(im_r, re_r),
        "spearman_success": spearman(im_s, re_s),
        "spearman_return_vs_real_success": spearman(im_r, re_s),
        "spearman_episode_return": spearman(im_e.ravel(), re_e.ravel()),
        "spearman_return_within_start": float(np.mean(within)) if within else None,
        "pearson_episode_return": pearson,
        **groups,
        **_bootstrap(rows),
    }


def _bootstrap(rows: list[dict[str, Any]], draws: int = 1000, seed: int = 0) -> dict[str, Any]:
    """95 % intervals of the over-policy Spearman correlations, resampling starts.

    Every policy ran from the same starts, so a draw resamples start indices (with replacement)
    once for all policies; draws where a correlation is undefined (ties) are left out.
    """
    arr = {
        k: np.array([[p[w][k] for p in rows] for w in ("imagined", "real")], float)
        for k in ("returns", "success")
    }  # (2, P, S) each
    rng = np.random.default_rng(seed)
    n = arr["returns"].shape[2]
    got: dict[str, list[float]] = {"return": [], "success": []}
    for _ in range(draws):
        pick = rng.integers(0, n, n)
        for name, k in (("return", "returns"), ("success", "success")):
            im, re = arr[k][:, :, pick].mean(2)
            if (rho := spearman(im, re)) is not None:
                got[name].append(rho)
    return {
        f"spearman_{name}_ci95": (
            None if not v else [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
        )
        for name, v in got.items()
    }


def choose_mode(modes: dict[str, dict[str, Any]]) -> str:
    """The reward mode whose imagined return best ranks the policies by real success.

    Real success is the one yardstick shared by every mode (each mode's "real return" is its own
    reward on real features), so modes are compared on Spearman(imagined return, real success
    rate); ties go to the higher Spearman(imagined, real return), then to :data:`MODES` order.
    An undefined correlation counts as lowest.
    """

    def key(m: str) -> tuple[float, float, int]:
        s = modes[m]
        a, b = s["spearman_return_vs_real_success"], s["spearman_return"]
        return (-np.inf if a is None else a, -np.inf if b is None else b, -MODES.index(m))

    return max(modes, key=key)


def summarize(returns: np.ndarray, success: np.ndarray) -> dict[str, Any]:
    """Per-episode ``returns (E,)`` and ``success (E,)`` -> means, counts and Wilson 95 %."""
    k, n = int(success.sum()), len(success)
    return {
        "mean_return": float(returns.mean()),
        "returns": returns.tolist(),
        "success": np.asarray(success, bool).tolist(),
        "success_rate": k / n,
        "successes": k,
        "episodes": n,
        "wilson95": list(wilson_interval(k, n)),
    }
