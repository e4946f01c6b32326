"""Run policies in the real simulator, through the same observation pipeline as the dream.

A policy trained inside an ``RLAWorld-*`` env sees patch features and emits a flattened chunk of
``K`` actions per decision. Here the real simulator renders a frame, the same frozen encoder turns
it into features ``(N, D)``, the policy returns a chunk, and the simulator executes its ``K``
control steps (stopping early on success). Episodes run in parallel worker processes; LIBERO
episodes use the task's fixed init states ``0..episodes-1``, other simulators seeds
``seed + i``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rla_gym.utils.io import to_jsonable
from rla_gym.utils.parallel import Emit, imap_workers
from rla_gym.utils.stats import wilson_interval

__all__ = ["FeaturePolicy", "RealEvalConfig", "SavedPolicy", "evaluate_in_sim", "run_episode"]


class FeaturePolicy(Protocol):
    """Deterministic policy on features: ``float32 (N, D)`` -> ``float32 (K * A,)`` in [-1, 1].

    A stateful policy (e.g. :class:`rla_gym.planning.MPCController`, which counts elapsed time
    and warm-starts its plans) also has ``reset(seed: int)``; :func:`run_episode` calls it at the
    start of every episode with the episode's seed.
    """

    def __call__(self, features: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class SavedPolicy:
    """Picklable factory of a saved :class:`~rla_gym.agents.ActorCritic` (or ``PPO.save``
    folder) as a deterministic :class:`FeaturePolicy`; each worker loads its own copy on CPU.

    ``SavedPolicy(path)()`` returns the callable ``features (N, D) -> chunk (K * A,)``.
    """

    path: str

    def __call__(self) -> FeaturePolicy:
        import torch

        from rla_gym.agents import ActorCritic

        torch.set_num_threads(1)  # one core per simulator worker
        policy = ActorCritic.load(self.path).eval()
        return lambda features: policy.predict(features, deterministic=True)[0]


@dataclass(frozen=True, kw_only=True)
class RealEvalConfig:
    """Where and how to evaluate."""

    sim: str = "libero"
    """real simulator: libero, robosuite or dmc"""
    task: str | None = None
    """task (default: the simulator's default task)"""
    resolution: int = 128
    """camera resolution; must match the features the policy was trained on"""
    encoder: str = "opennsfw-resnet50-res4"
    """frozen encoder; must match the policy's training features"""
    episodes: int = 50
    """episodes (LIBERO: init states 0..episodes-1)"""
    chunk: int = 8
    """control steps per policy decision (K)"""
    max_steps: int | None = None
    """control-step limit (default: the task's evaluation horizon)"""
    workers: int = 2
    """simulator processes"""
    seed: int = 0
    """seed of seeded resets (robosuite, dm-control)"""
    video_dir: Path | None = None
    """write the first ``videos`` episodes as mp4 here"""
    videos: int = 2
    """how many episodes to record"""


def run_episode(sim: Any, encoder: Any, policy: FeaturePolicy, index: int,
                cfg: RealEvalConfig) -> dict[str, Any]:
    """One real episode; returns success, return, length, the mean seconds per policy decision
    and (optionally) its frames."""
    init_id = index if sim.num_init_states else None
    obs = sim.reset(seed=cfg.seed + index, init_state_id=init_id)
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset(seed=cfg.seed + index)
    frames = [obs.frame]
    limit = cfg.max_steps or sim.max_steps
    ret, steps, success = 0.0, 0, bool(obs.success)
    decision_s, decisions = 0.0, 0
    while steps < limit and not success:
        feats = encoder.encode(obs.frame[None])[0]
        t0 = time.perf_counter()
        chunk = np.asarray(policy(feats), np.float32).reshape(-1, sim.action_dim)
        if len(chunk) == 1:  # one action held for the K control steps (action_mode="repeat")
            chunk = np.repeat(chunk, cfg.chunk, 0)
        if len(chunk) != cfg.chunk:
            raise ValueError(f"the policy returned {len(chunk)} actions of size "
                             f"{sim.action_dim}, not a chunk of K={cfg.chunk} or one action")
        decision_s, decisions = decision_s + time.perf_counter() - t0, decisions + 1
        # Normalised [-1, 1] -> simulator units (identity for LIBERO, robosuite, reacher).
        mid = (sim.action_high + sim.action_low) / 2
        half = (sim.action_high - sim.action_low) / 2
        for a in np.clip(chunk, -1.0, 1.0):
            obs = sim.step((mid + half * a).astype(np.float32))
            frames.append(obs.frame)
            ret += float(obs.reward)
            steps += 1
            if obs.success:
                success = True
                break
            if steps >= limit:
                break
    return {"index": index, "success": success, "return": ret, "length": steps,
            "decision_s": decision_s / max(decisions, 1), "frames": np.stack(frames)}


def _worker(args: tuple[Callable[[], FeaturePolicy], RealEvalConfig], indices: list[int],
            emit: Emit) -> None:
    from rla_gym.features import make_encoder
    from rla_gym.sims import make_sim

    make_policy, cfg = args
    sim = make_sim(cfg.sim, cfg.task, resolution=cfg.resolution)
    encoder, policy = make_encoder(cfg.encoder), make_policy()
    try:
        for i in indices:
            r = run_episode(sim, encoder, policy, i, cfg)
            if cfg.video_dir is None or i >= cfg.videos:
                r.pop("frames")
            emit(r)
    finally:
        sim.close()


def evaluate_in_sim(make_policy: Callable[[], FeaturePolicy], cfg: RealEvalConfig,
                    progress: bool = True) -> dict[str, Any]:
    """Evaluate the policy built by ``make_policy`` (a picklable factory, called in each worker).

    Returns:
        ``success_rate``, ``wilson95``, mean ``return`` and ``length``, ``mean_decision_s``
        (seconds per policy call), per-episode rows and the written video paths.
    """
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    videos: list[str] = []
    for row in imap_workers(_worker, (make_policy, cfg), range(cfg.episodes), cfg.workers,
                            desc=f"eval {cfg.sim}", progress=progress):
        if "frames" in row:
            videos.append(str(_write_video(row.pop("frames"), cfg, row)))
        rows.append(row)
    rows.sort(key=lambda r: r["index"])
    k = sum(r["success"] for r in rows)
    lo, hi = wilson_interval(k, len(rows))
    return {"success_rate": k / max(len(rows), 1), "successes": k, "episodes": len(rows),
            "wilson95": [lo, hi], "mean_return": float(np.mean([r["return"] for r in rows])),
            "mean_length": float(np.mean([r["length"] for r in rows])),
            "mean_decision_s": float(np.mean([r["decision_s"] for r in rows])), "rows": rows,
            "videos": sorted(videos), "wall_clock_s": time.perf_counter() - t0,
            "config": to_jsonable(cfg)}


def _write_video(frames: np.ndarray, cfg: RealEvalConfig, row: dict[str, Any]) -> Path:
    import imageio.v2 as imageio

    assert cfg.video_dir is not None
    tag = "ok" if row["success"] else "fail"
    out = Path(cfg.video_dir) / f"{cfg.sim}_ep{row['index']:03d}_{tag}.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(out, list(frames), fps=20, codec="libx264", macro_block_size=1)
    return out
