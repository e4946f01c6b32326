"""Scripted policies (expert, noisy expert, random, play) evaluated in the real simulator.

Scripted policies read the simulator's privileged state, not features, and act once per control
step; so no encoder runs and the camera renders only for recorded videos.
:func:`run_scripted_episode` is the package's one scripted-episode loop (evaluation here, the
expert-success benchmark and the dream-vs-real comparison, which replays its recorded actions in
the dream). Episodes, seeds, the
success rule and the result layout are those of :func:`~rla_gym.evaluation.real.evaluate_in_sim`,
so a scripted reference and a learned policy evaluated with the same :class:`RealEvalConfig` are
directly comparable.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np

from rla_gym.evaluation.real import RealEvalConfig, _write_video, summarize_rows
from rla_gym.utils.parallel import Emit, imap_workers

__all__ = ["evaluate_scripted_in_sim", "run_scripted_episode", "scripted_worker"]


def run_scripted_episode(
    sim: Any,
    kind: str,
    index: int,
    cfg: RealEvalConfig,
    noise: float = 0.3,
    *,
    frames: Literal["all", "chunks", "none"] = "all",
    stop_on_success: bool = True,
    state_keys: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One real episode of ``make_policy(kind)``: the one scripted-policy loop of the package.

    LIBERO starts from init state ``index``, other simulators from seed ``cfg.seed + index``;
    the policy's own noise is seeded with ``cfg.seed + index``. The episode runs
    ``cfg.max_steps`` control steps (default: the task's horizon), stopping at the first
    successful one if ``stop_on_success``. Scripted policies read privileged state, so the
    camera renders only the frames asked for.

    Args:
        sim: the adapter to drive (not closed here).
        kind: a :data:`rla_gym.sims.POLICY_KINDS` entry.
        index: episode index (init state / seed offset).
        cfg: seeds and horizon (``seed``, ``max_steps``) and ``chunk`` (``K``, for ``"chunks"``).
        noise: action-noise std of ``noisy`` (fraction of the half range).
        frames: ``"all"``: the reset frame and every step's; ``"chunks"``: the reset frame and
            the frame after every ``K``-th control step (and after the last one), i.e. what a
            chunked policy would observe; ``"none"``: no frames (nothing rendered after reset).
        stop_on_success: end at the first successful control step.
        state_keys: privileged ``SimStep.state`` entries to record at every step (e.g. reacher's
            ``"finger_pos"``), for studies that relate observations to the true state.

    Returns:
        ``index``, ``success`` (any step solved), ``return`` (summed simulator reward),
        ``length`` (control steps ``T``), ``actions`` (``float32 (T, A)``, normalised to
        ``[-1, 1]`` with :class:`~rla_gym.sims.policies.ActionScale`, so they replay in a dream),
        ``step_success`` (``bool (T,)``), ``proprio`` (``float32 (T + 1, P)``, the reset's and
        every step's), ``state`` (``{key: (T + 1, ...)}`` for ``state_keys``) and, unless
        ``frames="none"``, ``frames`` (``uint8 (F, R, R, 3)``).
    """
    from rla_gym.sims.policies import ActionScale, make_policy

    if frames not in ("all", "chunks", "none"):
        raise ValueError(f"frames must be 'all', 'chunks' or 'none', got {frames!r}")
    init_id = index if sim.num_init_states else None
    obs = sim.reset(seed=cfg.seed + index, init_state_id=init_id)
    policy = make_policy(kind, sim, seed=cfg.seed + index, noise=noise)
    policy.reset(obs)
    scale = ActionScale(sim)
    kept = [obs.frame] if frames != "none" else []
    proprio = [obs.proprio]
    states: dict[str, list[np.ndarray]] = {k: [obs.state[k]] for k in state_keys}
    limit = cfg.max_steps or sim.max_steps
    ret, success = 0.0, bool(obs.success)
    actions: list[np.ndarray] = []
    step_success: list[bool] = []
    while len(actions) < limit and not (success and stop_on_success):
        a = np.asarray(policy(obs), np.float32)
        t = len(actions) + 1
        keep = frames == "all" or (frames == "chunks" and (t % cfg.chunk == 0 or t == limit))
        obs = sim.step(a, render=keep)
        actions.append(scale.from_sim(a))
        step_success.append(bool(obs.success))
        ret += float(obs.reward)
        success = success or bool(obs.success)
        proprio.append(obs.proprio)
        for k in state_keys:
            states[k].append(obs.state[k])
        if keep:
            kept.append(obs.frame)
    if frames == "chunks" and len(actions) % cfg.chunk and len(actions) < limit:
        kept.append(obs.frame)  # stopped on success mid-chunk: that step's frame was not kept
    a_dim = int(sim.action_dim)
    out = {"index": index, "success": success, "return": ret, "length": len(actions),
           "actions": np.asarray(actions, np.float32).reshape(-1, a_dim),
           "step_success": np.asarray(step_success, bool),
           "proprio": np.asarray(proprio, np.float32),
           "state": {k: np.asarray(v) for k, v in states.items()}}  # fmt: skip
    if frames != "none":
        out["frames"] = np.stack(kept)
    return out


def scripted_worker(
    args: tuple[str, float, RealEvalConfig], indices: list[int], emit: Emit
) -> None:
    """A simulator process's episodes of a scripted kind, for ``imap_workers`` or
    :func:`~rla_gym.evaluation.real.run_episodes`: ``args = (kind, noise, cfg)``."""
    from rla_gym.sims import make_sim

    kind, noise, cfg = args
    record = cfg.video_dir is not None and cfg.videos > 0
    sim = make_sim(cfg.sim, cfg.task, resolution=cfg.resolution, render=record)
    try:
        for i in indices:
            video = record and i < cfg.videos
            r = run_scripted_episode(sim, kind, i, cfg, noise, frames="all" if video else "none")
            # The result rows stay one line per episode: no per-step arrays.
            del r["actions"], r["step_success"], r["proprio"], r["state"]
            emit(r)
    finally:
        sim.close()


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
    for row in imap_workers(scripted_worker, (kind, noise, cfg), range(cfg.episodes), cfg.workers,
                            desc=f"eval {kind} {cfg.sim}", progress=progress):  # fmt: skip
        if "frames" in row:
            videos.append(str(_write_video(row.pop("frames"), cfg, row)))
        rows.append(row)
    return summarize_rows(rows, cfg, videos, time.perf_counter() - t0)
