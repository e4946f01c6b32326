"""Run policies in the real simulator, through the same observation pipeline as the dream.

A policy trained inside an ``RLAWorld-*`` env sees patch features and emits a flattened chunk of
``K`` actions per decision. Here the real simulator renders a frame, the same frozen encoder turns
it into features ``(N, D)``, the policy returns a chunk, and the simulator executes its ``K``
control steps (stopping early on success). :func:`rollout` is that loop, over
:class:`~rla_gym.envs.real.RealFeatureEnv`, for every real evaluation (``rla-gym eval``, the
pipelines, ``dream_vs_real`` and the benchmarks). Episodes run in parallel worker processes;
LIBERO episodes use the task's fixed init states ``0..episodes-1``, other simulators seeds
``seed + i``. :func:`run_episodes` retries the episode of a worker that dies on a fresh worker
(then reports it as not run) and can log every finished episode as it ends, so that a re-run
of the same evaluation runs only the missing ones (:mod:`rla_gym.evaluation.episode_log`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rla_gym.evaluation.episode_log import (
    EpisodeLog,
    EvaluationMismatchError,
    check_same_evaluation,
    eval_header,
)
from rla_gym.utils.io import to_jsonable
from rla_gym.utils.parallel import Emit, WorkerError, imap_workers
from rla_gym.utils.stats import wilson_interval

if TYPE_CHECKING:
    from rla_gym.envs.real import RealFeatureEnv

__all__ = [
    "EpisodeLog",
    "EvaluationMismatchError",
    "FeaturePolicy",
    "RealEvalConfig",
    "SavedPolicy",
    "check_same_evaluation",
    "episode",
    "eval_env",
    "eval_header",
    "evaluate_in_sim",
    "feature_worker",
    "rollout",
    "run_episodes",
    "summarize_rows",
]


class FeaturePolicy(Protocol):
    """Deterministic policy on features: ``float32 (N, D)`` -> ``float32 (K * A,)`` in [-1, 1].

    A stateful policy (e.g. :class:`rla_gym.planning.MPCController`, which counts elapsed time
    and warm-starts its plans) also has ``reset(seed: int)``; :func:`rollout` calls it at the
    start of every episode with the episode's seed. A policy that needs the real simulator
    itself (an oracle that plans by restoring and running it, as ``benchmarks/planner_oracle.py``
    does) has ``bind_env(env: RealFeatureEnv)``, which :func:`evaluate_in_sim` calls once per
    worker before the first episode.
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
        return DeterministicPolicy(ActorCritic.load(self.path).eval())


class DeterministicPolicy:
    """A loaded :class:`~rla_gym.agents.ActorCritic` as a :class:`FeaturePolicy`: its mean chunk
    ``(K * A,)`` for one observation. ``reads_body`` (the policy's) makes the real evaluation show
    it ``{"features", "proprio"}`` with the real body."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.reads_body = bool(policy.reads_body)

    def __call__(self, observation: Any) -> np.ndarray:
        return self.policy.predict(observation, deterministic=True)[0]


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

    @classmethod
    def for_bundle(cls, manifest: dict[str, Any], **overrides: Any) -> RealEvalConfig:
        """The real task a bundle was built from: its simulator, task, camera resolution,
        encoder and chunk size from ``manifest``; every other field from ``overrides``."""
        return cls(
            sim=manifest["sim"],
            task=manifest["task"],
            resolution=int(manifest["resolution"]),
            encoder=manifest["encoder"],
            chunk=int(manifest["chunk"]),
            **overrides,
        )


def rollout(
    env: RealFeatureEnv,
    policy: FeaturePolicy,
    seed: int,
    init_state_id: int | None = None,
    *,
    keep_frames: bool = False,
    keep_observations: bool = False,
) -> dict[str, Any]:
    """One real episode of ``policy`` in ``env``: the one rollout path of every real evaluation.

    The episode is ``env.reset(seed=seed, options={"init_state_id": init_state_id})`` and then
    one ``env.step`` per policy decision until it terminates or truncates, so its scaling,
    success rule and horizon are the env's. A stateful policy's ``reset(seed=seed)`` is called
    first. The policy's output is clipped to ``[-1, 1]`` (as SB3's ``predict`` clips); one
    action ``(A,)`` from a policy in a chunk-mode env is held for the ``K`` control steps (the
    env's ``action_mode="repeat"``).

    Args:
        env: the real env (its ``terminate_on_success`` and horizons decide when to stop).
        policy: ``features (N, D) -> float32 (K * A,)`` or ``(A,)``.
        seed: the reset seed (and the policy's).
        init_state_id: fixed init state (LIBERO); ``None``: the env's rule from ``seed``.
        keep_frames: return every rendered camera frame, ``uint8 (T, R, R, 3)``.
        keep_observations: return the reset observation and the one after every chunk,
            ``float32 (E + 1, N, D)``.

    Returns:
        ``success`` (``info["is_success"]`` at the end), ``return`` (summed reward), ``length``
        (control steps), ``decisions`` (env steps), ``chunk_success`` (``bool (E,)``, this
        chunk's ``info["success"]``), ``decision_s`` (mean seconds per policy call) and, if
        asked, ``frames`` and ``observations``.
    """
    options = {} if init_state_id is None else {"init_state_id": int(init_state_id)}
    obs, info = env.reset(seed=seed, options=options)
    reset = getattr(policy, "reset", None)
    if callable(reset):
        reset(seed=seed)
    frames = [env.chunk_frames] if keep_frames else []
    observations, chunk_success = [obs] if keep_observations else [], []
    ret, decision_s = 0.0, 0.0
    # A start that is already solved ends the episode before any decision where success ends it.
    done = bool(info["is_success"]) and env.terminate_on_success
    while not done:
        t0 = time.perf_counter()
        action = np.asarray(policy(obs), np.float32).reshape(-1)
        decision_s += time.perf_counter() - t0
        if action.shape != env.action_space.shape and action.size == env.action_dim:
            action = np.tile(action, env.chunk)  # one action held for the K control steps
        if action.shape != env.action_space.shape:
            raise ValueError(
                f"the policy returned {action.size} values; expected "
                f"{env.action_space_desc}, or one action of size {env.action_dim}"
            )
        obs, reward, terminated, truncated, info = env.step(np.clip(action, -1.0, 1.0))
        ret += float(reward)
        chunk_success.append(bool(info["success"]))
        if keep_frames:
            frames.append(env.chunk_frames)
        if keep_observations:
            observations.append(obs)
        done = terminated or truncated
    n = len(chunk_success)
    out = {
        "success": bool(info["is_success"]),
        "return": ret,
        "length": int(info["t"]),
        "decisions": n,
        "chunk_success": np.array(chunk_success, bool),
        "decision_s": decision_s / max(n, 1),
    }
    if keep_frames:
        out["frames"] = np.concatenate(frames)
    if keep_observations:
        out["observations"] = np.stack(observations)
    return out


def eval_env(cfg: RealEvalConfig, render: bool = False, body: bool = False) -> RealFeatureEnv:
    """The real env ``rla-gym eval`` runs ``cfg`` in: episodes stop at the first successful
    control step or after ``cfg.max_steps`` control steps (default: the task's horizon). With
    ``body`` its observations are ``{"features", "proprio"}`` (for a policy that reads it)."""
    from rla_gym.envs.real import RealFeatureEnv

    return RealFeatureEnv(
        obs_mode="features+proprio" if body else "patch",
        sim=cfg.sim,
        task=cfg.task,
        resolution=cfg.resolution,
        encoder=cfg.encoder,
        chunk=cfg.chunk,
        terminate_on_success=True,
        max_control_steps=cfg.max_steps or "task",
        render_mode="rgb_array" if render else None,
    )


def episode(
    env: RealFeatureEnv,
    policy: FeaturePolicy,
    index: int,
    cfg: RealEvalConfig,
    keep_frames: bool = False,
) -> dict[str, Any]:
    """Episode ``index`` of ``cfg``: LIBERO from init state ``index``, every simulator from seed
    ``cfg.seed + index`` (the policy's reset seed too); the row of ``evaluate_in_sim``."""
    init_id = index if env.sim.num_init_states else None
    r = rollout(env, policy, cfg.seed + index, init_id, keep_frames=keep_frames)
    row = {
        "index": index,
        "success": r["success"],
        "return": r["return"],
        "length": r["length"],
        "decision_s": r["decision_s"],
    }
    if keep_frames:
        row["frames"] = r["frames"]
    return row


def feature_worker(
    args: tuple[Callable[[], FeaturePolicy], RealEvalConfig], indices: list[int], emit: Emit
) -> None:
    """A simulator process's episodes of a feature policy, for :func:`run_episodes`:
    ``args = (policy factory, cfg)``, one row per index emitted in order."""
    make_policy, cfg = args
    policy = make_policy()
    # A policy that dreams the robot's body (a planner on a body bundle) is shown the real one.
    env = eval_env(cfg, render=cfg.video_dir is not None, body=getattr(policy, "reads_body", False))
    bind = getattr(policy, "bind_env", None)
    if callable(bind):  # a policy that plans with the real simulator itself (an oracle)
        bind(env)
    try:
        for i in indices:
            emit(
                episode(
                    env, policy, i, cfg, keep_frames=cfg.video_dir is not None and i < cfg.videos
                )
            )
    finally:
        env.close()


def run_episodes(
    worker_fn: Callable[[Any, list[int], Emit], None],
    worker_args: Any,
    cfg: RealEvalConfig,
    header: dict[str, Any],
    *,
    desc: str,
    progress: bool = True,
    resume: Path | None = None,
    fresh: bool = False,
    retries: int = 1,
) -> dict[str, Any]:
    """Episodes ``0..cfg.episodes-1`` by ``worker_fn`` (which emits one row per index, in
    order), resumable and robust to dying workers; the result of :func:`evaluate_in_sim`.

    An episode whose worker dies is retried ``retries`` times on a fresh worker, then reported
    under ``not_run`` with the reason while the others go on. With ``resume``, every finished
    episode is appended to that :class:`EpisodeLog` as it ends and a re-run skips those already
    logged (``fresh``: the log is started over); the log must be of ``header``.

    Raises:
        EvaluationMismatchError: ``resume`` logs another evaluation.
        WorkerError: a worker raised or workers kept dying; finished episodes stay in ``resume``.
    """
    t0 = time.perf_counter()
    log = None if resume is None else EpisodeLog(resume, header, fresh=fresh)
    done = {} if log is None else log.rows
    rows = [done[i] for i in sorted(done) if i < cfg.episodes]
    resumed = len(rows)
    todo = [i for i in range(cfg.episodes) if i not in done]
    videos: list[str] = []
    retried: set[int] = {r["index"] for r in rows if r.get("retried")}
    not_run: dict[int, str] = {}

    def on_lost(index: int, reason: str, retrying: bool) -> None:
        if retrying:
            retried.add(index)
            return
        not_run[index] = f"worker {reason}, {retries + 1} attempt(s)"
        if log is not None:
            log.append({"not_run": index, "reason": not_run[index]})

    try:
        for row in imap_workers(worker_fn, worker_args, todo, cfg.workers, desc=desc,
                                progress=progress, retries=retries, lost="skip",
                                on_lost=on_lost):  # fmt: skip
            if "frames" in row:
                videos.append(str(_write_video(row.pop("frames"), cfg, row)))
            if row["index"] in retried:
                row["retried"] = True
            rows.append(row)
            if log is not None:
                log.append(row)
    except WorkerError as err:
        if log is None:
            raise
        raise WorkerError(
            f"{err}; the {len(rows)} finished episode(s) are kept in {log.path}: re-run the "
            f"same command to resume",
            err.details,
        ) from err
    finally:
        if log is not None:
            log.close()
    result = summarize_rows(rows, cfg, videos, time.perf_counter() - t0)
    result["resumed"] = resumed
    result["retried"] = sorted(retried)
    result["not_run"] = [{"index": i, "reason": not_run[i]} for i in sorted(not_run)]
    return result


def summarize_rows(
    rows: list[dict[str, Any]], cfg: RealEvalConfig, videos: list[str], wall_clock_s: float
) -> dict[str, Any]:
    """Success (with its Wilson 95 % interval), means and sorted rows of finished episodes."""
    rows = sorted(rows, key=lambda r: r["index"])
    k = sum(bool(r["success"]) for r in rows)
    lo, hi = wilson_interval(k, len(rows))

    def mean(key: str) -> float | None:
        return float(np.mean([r[key] for r in rows])) if rows else None

    out = {
        "success_rate": k / max(len(rows), 1),
        "successes": k,
        "episodes": len(rows),
        "wilson95": [lo, hi],
        "mean_return": mean("return"),
        "mean_length": mean("length"),
    }
    if rows and all("decision_s" in r for r in rows):
        out["mean_decision_s"] = mean("decision_s")
    return {**out, "rows": rows, "videos": sorted(videos), "wall_clock_s": wall_clock_s,
            "config": to_jsonable(cfg)}  # fmt: skip


def evaluate_in_sim(
    make_policy: Callable[[], FeaturePolicy],
    cfg: RealEvalConfig,
    progress: bool = True,
    resume: Path | None = None,
    identity: dict[str, Any] | None = None,
    *,
    fresh: bool = False,
    retries: int = 1,
) -> dict[str, Any]:
    """Evaluate the policy built by ``make_policy`` (a picklable factory, called in each worker).

    With ``resume``, every finished episode is appended to that JSON-lines log as it ends, and a
    re-run with the same ``identity`` (e.g. the policy's path) and the same evaluation settings
    skips the episodes already logged, so an interrupted evaluation loses no finished episode
    (``fresh``: start the log over). Episodes logged before an interruption keep their row but
    not their video. An episode whose worker process dies is retried ``retries`` times on a
    fresh worker, then listed under ``not_run``; the other episodes go on.

    Returns:
        ``success_rate``, ``wilson95``, mean ``return`` and ``length``, ``mean_decision_s``
        (seconds per policy call), per-episode rows of the finished episodes, the written video
        paths, ``resumed`` (rows taken from the log), ``retried`` (indices whose first worker
        died) and ``not_run`` (``[{"index", "reason"}]``).

    Raises:
        EvaluationMismatchError: ``resume`` logs another evaluation.
        WorkerError: a worker raised; the finished episodes stay in ``resume``.
    """
    return run_episodes(feature_worker, (make_policy, cfg), cfg, eval_header(identity, cfg),
                        desc=f"eval {cfg.sim}", progress=progress, resume=resume, fresh=fresh,
                        retries=retries)  # fmt: skip


def _write_video(frames: np.ndarray, cfg: RealEvalConfig, row: dict[str, Any]) -> Path:
    import imageio.v2 as imageio

    assert cfg.video_dir is not None
    tag = "ok" if row["success"] else "fail"
    out = Path(cfg.video_dir) / f"{cfg.sim}_ep{row['index']:03d}_{tag}.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(out, list(frames), fps=20, codec="libx264", macro_block_size=1)
    return out
