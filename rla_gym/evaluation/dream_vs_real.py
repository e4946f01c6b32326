"""Can the dream rank policies? Imagined vs real return and success from the same start states.

For every policy and every reset-bank start whose simulator init state is known (LIBERO's fixed
init states), the policy runs twice for the env's full horizon (``max_episode_steps`` chunks of
``K`` control steps):

* **imagined**: in the dreamed env from the bank start; return = sum of the video-aligned
  reward, success = the calibrated success estimate at any step;
* **real**: in the real simulator from the same init state; the frame after every chunk is
  encoded and scored by *the same* reward against the same reference demo, so the two returns are
  in the same units; success = the simulator's success at any step.

Policy kinds: ``saved`` (an :class:`~rla_gym.agents.ActorCritic` folder, closed loop in both
worlds), ``random`` (seeded uniform chunks, the same in both) and ``expert`` (the privileged
scripted expert; it acts in the real simulator and its recorded actions are replayed open loop
in the dream, which has no privileged state). Spearman rank correlations over policies say whether
the dream orders policies as reality does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rla_gym.utils.parallel import Emit, imap_workers
from rla_gym.utils.stats import spearman, wilson_interval

__all__ = ["PolicySpec", "compare", "dream_rollouts", "real_rollouts", "spearman", "summarize"]


@dataclass(frozen=True)
class PolicySpec:
    """One policy to compare.

    Attributes:
        name: label in reports.
        kind: ``"saved"``, ``"random"`` or ``"expert"``.
        path: policy folder for ``saved``.
    """

    name: str
    kind: str
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("saved", "random", "expert"):
            raise ValueError(f"policy kind must be saved, random or expert, got {self.kind!r}")
        if self.kind == "saved" and not self.path:
            raise ValueError(f"policy {self.name!r}: kind 'saved' needs a path")


def _random_chunks(seed: int, start: int, episodes: int, size: int) -> np.ndarray:
    """The seeded uniform chunks of the random policy: ``(E, K * A)`` in ``[-1, 1]``."""
    rng = np.random.default_rng([seed, start])
    return rng.uniform(-1, 1, (episodes, size)).astype(np.float32)


# --------------------------------------------------------------------------- dream side
@torch.no_grad()
def dream_rollouts(
    venv: Any, starts: list[int], policy: Any = None, actions: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Full-horizon rollouts from reset-bank ``starts`` in a dreamed vector env.

    Args:
        venv: an :class:`~rla_gym.envs.RLAWorldVectorEnv` with ``num_envs == len(starts)``.
        starts: reset-bank indices.
        policy: an object with ``predict(obs_batch, deterministic=True)`` (closed loop), or
        actions: ``float32 (B, E, K * A)`` chunks to replay open loop.
        seed: env ``i`` draws its flow noise from seed ``seed + i``.

    Returns:
        ``rewards (B, E)``, ``success (B, E)`` (estimate per step) and ``demo (B,)``.
    """
    b, horizon = venv.num_envs, venv.max_episode_steps
    if len(starts) != b:
        raise ValueError(f"{len(starts)} starts for {b} envs")
    if (policy is None) == (actions is None):
        raise ValueError("pass exactly one of policy and actions")
    if actions is not None and actions.shape[:2] != (b, horizon):
        raise ValueError(f"actions must be (B={b}, E={horizon}, K*A), got {actions.shape}")
    obs = None
    for i, index in enumerate(starts):
        mask = np.zeros(b, bool)
        mask[i] = True
        obs, info = venv.reset(seed=[seed + j for j in range(b)],
                               options={"reset_mask": mask, "start": "init", "index": index})
    demo = np.asarray(info["demo"])
    rewards, success = np.zeros((b, horizon)), np.zeros((b, horizon), bool)
    for e in range(horizon):
        act = policy.predict(obs, deterministic=True)[0] if actions is None else actions[:, e]
        obs, reward, _, _, info = venv.step(act)
        rewards[:, e] = reward
        success[:, e] = info["is_success_estimate"]
    return {"rewards": rewards, "success": success, "demo": demo}


# --------------------------------------------------------------------------- real side
@dataclass(frozen=True)
class _RealJob:
    sim: str
    task: str
    resolution: int
    encoder: str
    chunk: int
    episodes: int  # env steps (chunks) per rollout
    seed: int


def _real_worker(job: _RealJob, items: list[tuple[PolicySpec, int, int]], emit: Emit) -> None:
    from rla_gym.agents import ActorCritic
    from rla_gym.envs.real import RealFeatureEnv
    from rla_gym.evaluation.real import rollout

    torch.set_num_threads(1)
    # The full horizon whatever happens: success is scored per chunk, not an episode end.
    env = RealFeatureEnv(sim=job.sim, task=job.task, resolution=job.resolution,
                         encoder=job.encoder, chunk=job.chunk, max_episode_steps=job.episodes,
                         terminate_on_success=False)
    loaded: dict[str, Any] = {}
    try:
        for spec, start, init_id in items:
            seed = job.seed + start
            if spec.kind == "expert":
                emit({"policy": spec.name, "start": start, **_expert_rollout(env, job, seed,
                                                                             init_id)})
                continue
            if spec.kind == "saved":
                if spec.path not in loaded:
                    loaded[spec.path] = ActorCritic.load(spec.path).eval()
                model = loaded[spec.path]

                def policy(f: np.ndarray, model: Any = model) -> np.ndarray:
                    return model.predict(f, deterministic=True)[0]
            else:
                chunks = iter(_random_chunks(job.seed, start, job.episodes,
                                             job.chunk * env.action_dim))

                def policy(f: np.ndarray, chunks: Any = chunks) -> np.ndarray:
                    return next(chunks)
            r = rollout(env, policy, seed, init_id, keep_observations=True)
            emit({"policy": spec.name, "start": start,
                  "features": r["observations"].astype(np.float16),
                  "success": r["chunk_success"], "sim_return": r["return"]})
    finally:
        env.close()


def _expert_rollout(env: Any, job: _RealJob, seed: int, init_id: int) -> dict[str, Any]:
    """The privileged scripted expert for ``job.episodes`` chunks, on ``env``'s simulator.

    The expert reads the simulator's state at every control step, so it cannot act through the
    env's one-decision-per-chunk ``step``; it drives ``env.sim`` directly, and its actions are
    recorded normalised with the env's own scaling (to replay them in the dream).
    """
    from rla_gym.sims.policies import make_policy

    obs = env.sim.reset(seed=seed, init_state_id=init_id)
    expert = make_policy("expert", env.sim, seed=seed)
    expert.reset(obs)
    feats, success, sim_return, taken = [], [], 0.0, []
    for _ in range(job.episodes):
        hit = False
        for _ in range(job.chunk):
            a = np.asarray(expert(obs), np.float32)
            taken.append(env.from_sim_action(a))
            obs = env.sim.step(a)
            sim_return += float(obs.reward)
            hit |= bool(obs.success)
        feats.append(env.encoder.encode(obs.frame[None])[0].astype(np.float16))
        success.append(hit)
    return {"features": np.stack(feats), "success": np.array(success), "sim_return": sim_return,
            "actions": np.stack(taken).reshape(job.episodes, -1).astype(np.float32)}


def real_rollouts(
    manifest: dict[str, Any], specs: list[PolicySpec], starts: list[int], init_ids: list[int],
    episodes: int, workers: int = 2, seed: int = 0, progress: bool = True,
) -> dict[tuple[str, int], dict[str, Any]]:
    """Real-simulator rollouts of every policy from every start (see the module docstring)."""
    job = _RealJob(manifest["sim"], manifest["task"], int(manifest["resolution"]),
                   manifest["encoder"], int(manifest["chunk"]), episodes, seed)
    items = [(s, st, ii) for s in specs for st, ii in zip(starts, init_ids, strict=True)]
    # Interleave policies so each worker sees them all (one model load per policy per worker).
    rows = imap_workers(_real_worker, job, items, workers, desc=f"real {job.sim}",
                        progress=progress)
    return {(r["policy"], r["start"]): r for r in rows}


# --------------------------------------------------------------------------- comparison
def compare(
    bundle: str | Path, specs: list[PolicySpec], num_starts: int = 20, workers: int = 2,
    flow_steps: int = 10, seed: int = 0, device: str = "cpu", progress: bool = True,
) -> dict[str, Any]:
    """Imagined vs real return and success for every policy; see the module docstring.

    Returns:
        per-policy means, Wilson intervals and per-start arrays, and the Spearman rank
        correlations over policies (return, success) and over all (policy, start) returns.
    """
    from rla_gym.envs.rla_world import RLAWorldConfig
    from rla_gym.envs.vector import RLAWorldVectorEnv

    t0 = time.perf_counter()
    cfg = RLAWorldConfig(artifacts=str(bundle), device=device, flow_steps=flow_steps)
    known = [i for i, ii in enumerate(RLAWorldVectorEnv(1, config=cfg).core.art.reset_init)
             if ii >= 0]
    if not known:
        raise ValueError(f"bundle {bundle} has no reset starts with a known simulator init state")
    starts = known[:num_starts]
    venv = RLAWorldVectorEnv(len(starts), config=cfg)
    core = venv.core
    init_ids = [int(core.art.reset_init[i]) for i in starts]
    horizon = venv.max_episode_steps
    real = real_rollouts(core.manifest, specs, starts, init_ids, horizon, workers, seed,
                         progress)
    out: dict[str, Any] = {"starts": starts, "init_state_ids": init_ids, "horizon": horizon,
                           "chunk": core.chunk, "policies": {}}
    from rla_gym.agents import ActorCritic

    for spec in specs:
        if spec.kind == "saved":
            dream = dream_rollouts(venv, starts, policy=ActorCritic.load(spec.path), seed=seed)
        else:
            size = core.chunk * core.action_dim
            acts = np.stack([
                real[(spec.name, s)]["actions"] if spec.kind == "expert"
                else _random_chunks(seed, s, horizon, size) for s in starts
            ])
            dream = dream_rollouts(venv, starts, actions=acts, seed=seed)
        # Score the real frames with the dream's own reward, against the same reference demo.
        feats = torch.from_numpy(np.stack([real[(spec.name, s)]["features"] for s in starts]))
        b = len(starts)
        demo = torch.from_numpy(dream["demo"]).repeat_interleave(horizon)
        rows = torch.arange(1, horizon + 1).repeat(b)  # after chunk e the reference row is e + 1
        r_real, _ = core.reward(feats.view(b * horizon, *feats.shape[2:]).float(), demo, rows)
        real_ret = r_real.view(b, horizon).sum(1).numpy()
        real_succ = np.stack([real[(spec.name, s)]["success"] for s in starts]).any(1)
        dream_ret, dream_succ = dream["rewards"].sum(1), dream["success"].any(1)
        out["policies"][spec.name] = {
            "kind": spec.kind, "path": spec.path,
            "imagined": {**summarize(dream_ret, dream_succ), "success": dream_succ.tolist()},
            "real": {**summarize(real_ret, real_succ), "success": real_succ.tolist(),
                     "sim_return": float(np.mean(
                [real[(spec.name, s)]["sim_return"] for s in starts]))},
        }
    venv.close()
    pols = out["policies"].values()
    im_r = [p["imagined"]["mean_return"] for p in pols]
    re_r = [p["real"]["mean_return"] for p in pols]
    im_s = [p["imagined"]["success_rate"] for p in pols]
    re_s = [p["real"]["success_rate"] for p in pols]
    all_im = np.concatenate([p["imagined"]["returns"] for p in pols])
    all_re = np.concatenate([p["real"]["returns"] for p in pols])
    out["spearman"] = {"mean_return": spearman(im_r, re_r), "success_rate": spearman(im_s, re_s),
                       "episode_return": spearman(all_im, all_re)}
    out["pearson_episode_return"] = float(np.corrcoef(all_im, all_re)[0, 1])
    out["wall_clock_s"] = time.perf_counter() - t0
    return out


def summarize(returns: np.ndarray, success: np.ndarray) -> dict[str, Any]:
    """Per-episode ``returns (E,)`` and ``success (E,)`` -> means, counts and Wilson 95 %."""
    k, n = int(success.sum()), len(success)
    return {"mean_return": float(returns.mean()), "returns": returns.tolist(),
            "success_rate": k / n, "successes": k, "episodes": n,
            "wilson95": list(wilson_interval(k, n))}
