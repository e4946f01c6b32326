"""Scripted policies (expert, noisy expert, random, play) evaluated in the real simulator.

Scripted policies read the simulator's privileged state, not features, and act once per control
step; so no encoder runs and the camera renders only for recorded videos. Episodes, seeds, the
success rule and the result layout are those of :func:`~rla_gym.evaluation.real.evaluate_in_sim`,
so a scripted reference and a learned policy evaluated with the same :class:`RealEvalConfig` are
directly comparable.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from rla_gym.evaluation.real import RealEvalConfig, _write_video
from rla_gym.utils.io import to_jsonable
from rla_gym.utils.parallel import Emit, imap_workers
from rla_gym.utils.stats import wilson_interval

__all__ = ["evaluate_scripted_in_sim", "run_scripted_episode", "summarize_episodes"]


def run_scripted_episode(
    sim: Any, kind: str, index: int, cfg: RealEvalConfig, noise: float = 0.3
) -> dict[str, Any]:
    """One real episode of ``make_policy(kind)``: success, return, length (and frames).

    LIBERO starts from init state ``index``, other simulators from seed ``cfg.seed + index``;
    the policy's own noise is seeded with ``cfg.seed + index``. The episode stops at the first
    successful control step or after ``cfg.max_steps`` (default: the task's horizon).
    """
    from rla_gym.sims.policies import make_policy

    init_id = index if sim.num_init_states else None
    obs = sim.reset(seed=cfg.seed + index, init_state_id=init_id)
    policy = make_policy(kind, sim, seed=cfg.seed + index, noise=noise)
    policy.reset(obs)
    frames = [obs.frame]
    limit = cfg.max_steps or sim.max_steps
    ret, steps, success = 0.0, 0, bool(obs.success)
    while steps < limit and not success:
        obs = sim.step(policy(obs))
        frames.append(obs.frame)
        ret += float(obs.reward)
        steps += 1
        success = bool(obs.success)
    return {"index": index, "success": success, "return": ret, "length": steps,
            "frames": np.stack(frames)}  # fmt: skip


def _worker(args: tuple[str, float, RealEvalConfig], indices: list[int], emit: Emit) -> None:
    from rla_gym.sims import make_sim

    kind, noise, cfg = args
    record = cfg.video_dir is not None and cfg.videos > 0
    sim = make_sim(cfg.sim, cfg.task, resolution=cfg.resolution, render=record)
    try:
        for i in indices:
            r = run_scripted_episode(sim, kind, i, cfg, noise)
            if not record or i >= cfg.videos:
                r.pop("frames")
            emit(r)
    finally:
        sim.close()


def summarize_episodes(
    rows: list[dict[str, Any]], cfg: RealEvalConfig, videos: list[str], wall_clock_s: float
) -> dict[str, Any]:
    """The result dict of an evaluation from its per-episode rows.

    Returns:
        ``success_rate``, ``successes``, ``episodes``, ``wilson95`` (``[low, high]``),
        ``mean_return``, ``mean_length``, ``rows`` (sorted by index), ``videos``,
        ``wall_clock_s`` and ``config``: the keys of ``evaluate_in_sim``'s result.
    """
    rows = sorted(rows, key=lambda r: r["index"])
    k = sum(bool(r["success"]) for r in rows)
    lo, hi = wilson_interval(k, len(rows))
    return {"success_rate": k / max(len(rows), 1), "successes": k, "episodes": len(rows),
            "wilson95": [lo, hi], "mean_return": float(np.mean([r["return"] for r in rows])),
            "mean_length": float(np.mean([r["length"] for r in rows])), "rows": rows,
            "videos": sorted(videos), "wall_clock_s": wall_clock_s,
            "config": to_jsonable(cfg)}  # fmt: skip


def evaluate_scripted_in_sim(
    kind: str, cfg: RealEvalConfig, noise: float = 0.3, progress: bool = True
) -> dict[str, Any]:
    """Evaluate a scripted policy kind (``expert``, ``noisy``, ``random``, ``play``).

    ``cfg.encoder``, ``cfg.chunk`` and ``cfg.resolution`` (except for videos) play no role.

    Args:
        kind: a :data:`rla_gym.sims.POLICY_KINDS` entry.
        cfg: simulator, task, episodes, seeds, horizon, workers and videos.
        noise: action-noise std of ``noisy`` (fraction of the half range).
        progress: show a progress bar.

    Returns:
        The same keys as :func:`~rla_gym.evaluation.real.evaluate_in_sim`.

    Example:
        >>> cfg = RealEvalConfig(sim="dmc", episodes=2, workers=1)  # doctest: +SKIP
        >>> evaluate_scripted_in_sim("expert", cfg)["success_rate"]  # doctest: +SKIP
        1.0
    """
    from rla_gym.sims import POLICY_KINDS

    if kind not in POLICY_KINDS:
        raise ValueError(f"unknown policy kind {kind!r}; choose one of: {', '.join(POLICY_KINDS)}")
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    videos: list[str] = []
    for row in imap_workers(_worker, (kind, noise, cfg), range(cfg.episodes), cfg.workers,
                            desc=f"eval {kind} {cfg.sim}", progress=progress):  # fmt: skip
        if "frames" in row:
            videos.append(str(_write_video(row.pop("frames"), cfg, row)))
        rows.append(row)
    return summarize_episodes(rows, cfg, videos, time.perf_counter() - t0)
