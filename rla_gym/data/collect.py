"""Collect episodes from a real simulator with a scripted or random policy, in parallel, resumably.

Each worker process owns one simulator and records the episode indices assigned to it. Episodes are
written atomically, so stopping a collection (Ctrl-C, a crash, a killed machine) loses at most the
episodes in flight; running the same command again records only the missing ones.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rla_gym.data.episodes import Episode, EpisodeStore
from rla_gym.utils.io import to_jsonable
from rla_gym.utils.parallel import Emit, imap_workers

__all__ = ["CollectConfig", "collect", "record_episode"]


@dataclass(frozen=True, kw_only=True)
class CollectConfig:
    """What to collect and where."""

    out: Path
    """dataset folder (created if missing; one task per folder)"""
    sim: Literal["libero", "robosuite", "dmc"] = "libero"
    """real simulator"""
    task: str | None = None
    """task within the simulator (default: libero_object/0, Lift, reacher-easy)"""
    policy: Literal["expert", "noisy", "random", "play"] = "expert"
    """who acts: scripted expert, noisy expert (successes and failures), uniform random, or play"""
    episodes: int = 10
    """episode indices 0..episodes-1 of this policy are recorded (existing ones are skipped)"""
    resolution: int = 128
    """square camera resolution in pixels (a multiple of 16)"""
    workers: int = 2
    """simulator processes"""
    seed: int = 0
    """base seed; episode i of policy p uses a seed derived from (seed, p, i)"""
    noise: float = 0.3
    """action-noise scale of the noisy policy"""
    max_steps: int | None = None
    """episode step limit (default: the task's evaluation horizon)"""
    steps_after_success: int = 10
    """keep recording this many steps after success, so the end state is seen settled"""


def _episode_seed(cfg: CollectConfig, index: int) -> int:
    # crc32 of the policy name keeps seeds of different policies apart and stable across runs.
    return (cfg.seed * 1_000_003 + zlib.crc32(cfg.policy.encode()) + index) % (2**31 - 1)


def record_episode(
    sim: Any,
    policy: Any,
    seed: int,
    init_state_id: int | None,
    max_steps: int,
    steps_after_success: int,
) -> Episode:
    """Run one episode of ``policy`` in ``sim`` and return it (frames, actions, proprio, ...)."""
    obs = sim.reset(seed=seed, init_state_id=init_state_id)
    init_state = sim.get_sim_state()
    policy.reset(obs)
    frames, proprio, success = [obs.frame], [obs.proprio], [obs.success]
    actions: list[np.ndarray] = []
    rewards: list[float] = []
    left = None
    for _ in range(max_steps):
        a = np.asarray(policy(obs), np.float32)
        obs = sim.step(a)
        actions.append(a)
        rewards.append(obs.reward)
        frames.append(obs.frame)
        proprio.append(obs.proprio)
        success.append(obs.success)
        if obs.success and left is None:
            left = steps_after_success
        if left is not None:
            if left == 0:
                break
            left -= 1
    return Episode(
        frames=np.stack(frames),
        actions=np.stack(actions),
        proprio=np.stack(proprio),
        rewards=np.asarray(rewards, np.float32),
        success=np.asarray(success, bool),
        init_state=init_state,
        meta={
            "sim": sim.sim,
            "task": sim.task,
            "seed": seed,
            "init_state_id": -1 if init_state_id is None else init_state_id,
            "resolution": sim.resolution,
            "success_any": bool(np.any(success)),
            "success_final": bool(success[-1]),
        },
    )


def _worker(cfg: CollectConfig, indices: list[int], emit: Emit) -> None:
    from rla_gym.sims.factory import make_sim
    from rla_gym.sims.policies import make_policy

    store = EpisodeStore(cfg.out)
    sim = make_sim(cfg.sim, cfg.task, resolution=cfg.resolution)
    try:
        max_steps = cfg.max_steps or sim.max_steps
        for i in indices:
            seed = _episode_seed(cfg, i)
            init_id = i % sim.num_init_states if sim.num_init_states else None
            policy = make_policy(cfg.policy, sim, seed=seed, noise=cfg.noise)
            ep = record_episode(sim, policy, seed, init_id, max_steps, cfg.steps_after_success)
            ep.meta["policy"] = cfg.policy
            store.write(store.episode_id(cfg.policy, i), ep)
            emit((ep.meta["success_any"], ep.length))
    finally:
        sim.close()


def collect(cfg: CollectConfig, progress: bool = True) -> dict[str, Any]:
    """Record the missing episodes of ``cfg`` and return a summary.

    Returns:
        ``{"recorded": n, "skipped": n, "success_rate": ..., "total_steps": ...}`` for this run.
    """
    from rla_gym.sims.factory import make_sim

    if cfg.episodes < 0 or cfg.workers < 1:
        raise ValueError("episodes must be >= 0 and workers >= 1")
    store = EpisodeStore(cfg.out)
    store.clean_partial()
    todo = [i for i in range(cfg.episodes) if not store.has(store.episode_id(cfg.policy, i))]
    # Build one simulator in the parent first: bad sim/task/resolution or a missing extra fails
    # here, with a clear message, before any worker starts.
    probe = make_sim(cfg.sim, cfg.task, resolution=cfg.resolution)
    try:
        store.init_manifest(
            {
                "sim": probe.sim,
                "task": probe.task,
                "resolution": probe.resolution,
                "action_dim": probe.action_dim,
                "action_low": probe.action_low.tolist(),
                "action_high": probe.action_high.tolist(),
                "max_steps": probe.max_steps,
                "num_init_states": probe.num_init_states,
            }
        )
    finally:
        probe.close()
    summary: dict[str, Any] = {
        "recorded": 0,
        "skipped": cfg.episodes - len(todo),
        "successes": 0,
        "total_steps": 0,
        "config": to_jsonable(cfg),
    }
    if not todo:
        return summary
    results = imap_workers(
        _worker,
        cfg,
        todo,
        cfg.workers,
        desc=f"collect {cfg.sim} {cfg.policy}",
        progress=progress,
        postfix=lambda: {"success": f"{summary['successes']}/{summary['recorded']}"},
    )
    for ok, length in results:
        summary["recorded"] += 1
        summary["successes"] += int(ok)
        summary["total_steps"] += int(length)
    summary["success_rate"] = summary["successes"] / max(summary["recorded"], 1)
    return summary
