"""Collect episodes from a real simulator with a scripted or random policy, in parallel, resumably.

Each worker process owns one simulator and records the episode indices assigned to it. Episodes are
written atomically, so stopping a collection (Ctrl-C, a crash, a killed machine) loses at most the
episodes in flight; running the same command again records only the missing ones.

``policy="branch"`` records **counterfactual branches**: one source run of ``branch_source``
(a *trunk*, stored like any episode) and, every ``branch_every`` steps along it, the simulator
restored *exactly* to that state and driven by perturbed versions of the trunk's next
``branch_steps`` actions (Gaussian noise of each ``branch_noise`` scale, and a uniform random
sequence), each stored as a short episode of its own. The world model then sees one ``s_t`` with
several ``(a, s_{t+K})``, which a dataset of independent runs never shows it. Source ``i``'s
episodes are ``branch_{i:03d}{j:03d}``: ``j = 0`` is the trunk, ``j = 1 + p * M + m`` the branch of
variant ``m`` (of ``M``) at branch point ``p``. The trunk is written last and marks the source as
done; a run interrupted inside a source re-runs it (the same seed gives the same trunk and the same
perturbations) and writes only the branches still missing.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rla_gym.data.episodes import Episode, EpisodeStore
from rla_gym.utils.io import to_jsonable
from rla_gym.utils.parallel import Emit, imap_workers

__all__ = [
    "CollectConfig",
    "branch_id",
    "collect",
    "open_dataset",
    "record_branches",
    "record_episode",
    "record_missing",
    "sim_manifest",
]


@dataclass(frozen=True, kw_only=True)
class CollectConfig:
    """What to collect and where."""

    out: Path
    """dataset folder (created if missing; one task per folder)"""
    sim: Literal["libero", "robosuite", "dmc"] = "libero"
    """real simulator"""
    task: str | None = None
    """task within the simulator (default: libero_object/0, Lift, reacher-easy)"""
    policy: Literal["expert", "noisy", "random", "play", "branch"] = "expert"
    """who acts: scripted expert, noisy expert (successes and failures), uniform random, play, or
    ``branch``: a ``branch_source`` run with counterfactual branches from restored states"""
    episodes: int = 10
    """episode indices 0..episodes-1 of this policy are recorded (existing ones are skipped); for
    ``branch``, source runs (at most 1000), each with its branches"""
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
    branch_source: Literal["expert", "noisy"] = "noisy"
    """``branch``: the policy of the trunks (its noise is ``noise``)"""
    branch_every: int = 8
    """``branch``: control steps between branch points along a trunk (from step 0)"""
    branch_steps: int = 8
    """``branch``: control steps of each branch (one chunk of the dreamed env by default)"""
    branch_noise: tuple[float, ...] = (0.1, 0.3)
    """``branch``: Gaussian perturbations of the trunk's next actions, one branch each (std in
    normalised ``[-1, 1]`` units), plus one uniform random branch"""

    def __post_init__(self) -> None:
        if self.episodes < 0 or self.workers < 1:
            raise ValueError("episodes must be >= 0 and workers >= 1")
        if self.policy == "branch":
            if self.episodes > _BRANCH_IDS:
                raise ValueError(f"branch collects at most {_BRANCH_IDS} source runs")
            if self.branch_every < 1 or self.branch_steps < 1:
                raise ValueError("branch_every and branch_steps must be >= 1")
            if any(not (s > 0 and np.isfinite(s)) for s in self.branch_noise):
                raise ValueError(f"branch_noise must be finite and > 0, got {self.branch_noise}")


_BRANCH_IDS = 1000  # branch ids keep three digits each for the source and the branch


def _episode_seed(cfg: CollectConfig, index: int) -> int:
    # crc32 of the policy name keeps seeds of different policies apart and stable across runs.
    return (cfg.seed * 1_000_003 + zlib.crc32(cfg.policy.encode()) + index) % (2**31 - 1)


class _Trace:
    """What one run records, step by step: the one place an :class:`Episode` is assembled."""

    def __init__(self, obs: Any) -> None:
        self.frames, self.proprio, self.success = [obs.frame], [obs.proprio], [obs.success]
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []

    def add(self, action: np.ndarray, obs: Any) -> None:
        self.actions.append(np.asarray(action, np.float32))
        self.rewards.append(obs.reward)
        self.frames.append(obs.frame)
        self.proprio.append(obs.proprio)
        self.success.append(obs.success)

    def episode(self, sim: Any, init_state: np.ndarray, **meta: Any) -> Episode:
        return Episode(
            frames=np.stack(self.frames),
            actions=np.stack(self.actions),
            proprio=np.stack(self.proprio),
            rewards=np.asarray(self.rewards, np.float32),
            success=np.asarray(self.success, bool),
            init_state=init_state,
            meta={
                "sim": sim.sim,
                "task": sim.task,
                "resolution": sim.resolution,
                "success_any": bool(np.any(self.success)),
                "success_final": bool(self.success[-1]),
                **meta,
            },
        )


def record_episode(
    sim: Any,
    policy: Any,
    seed: int,
    init_state_id: int | None,
    max_steps: int,
    steps_after_success: int,
    before_step: Callable[[int], None] | None = None,
) -> Episode:
    """Run one episode of ``policy`` in ``sim`` and return it (frames, actions, proprio, ...).

    ``before_step(t)`` is called before action ``t`` is chosen (e.g. to save the state there).
    """
    obs = sim.reset(seed=seed, init_state_id=init_state_id)
    init_state = sim.get_sim_state()
    policy.reset(obs)
    trace = _Trace(obs)
    left = None
    for t in range(max_steps):
        if before_step is not None:
            before_step(t)
        a = np.asarray(policy(obs), np.float32)
        obs = sim.step(a)
        trace.add(a, obs)
        if obs.success and left is None:
            left = steps_after_success
        if left is not None:
            if left == 0:
                break
            left -= 1
    return trace.episode(
        sim, init_state, seed=seed, init_state_id=-1 if init_state_id is None else init_state_id
    )


def branch_id(source: int, j: int) -> str:
    """Episode id of source run ``source``'s trunk (``j = 0``) or its branch ``j >= 1``."""
    if not (0 <= source < _BRANCH_IDS and 0 <= j < _BRANCH_IDS):
        raise ValueError(
            f"branch ids hold sources and branches 0..{_BRANCH_IDS - 1}, got {source}, {j}"
        )
    return EpisodeStore.episode_id("branch", source * _BRANCH_IDS + j)


def _branch_points(trunk_length: int, cfg: CollectConfig) -> list[int]:
    """Trunk steps where branches start: every ``branch_every``, with room for a whole branch."""
    return list(range(0, trunk_length - cfg.branch_steps + 1, cfg.branch_every))


def record_branches(
    sim: Any, cfg: CollectConfig, source: int, store: EpisodeStore, max_steps: int
) -> tuple[Episode, int]:
    """Run source ``source``'s trunk (at most ``max_steps``), write its missing branches, then the
    trunk (the done mark).

    Returns:
        ``(trunk, branches written now)``.
    """
    from rla_gym.sims.policies import ActionScale, make_policy, perturbed_sequences

    sim_seed = _episode_seed(cfg, source)
    init_id = source % sim.num_init_states if sim.num_init_states else None
    policy = make_policy(cfg.branch_source, sim, seed=sim_seed, noise=cfg.noise)
    states: dict[int, np.ndarray] = {}

    def save_state(t: int) -> None:
        if t % cfg.branch_every == 0:
            states[t] = sim.get_sim_state()

    trunk = record_episode(
        sim, policy, sim_seed, init_id, max_steps, cfg.steps_after_success, save_state
    )
    scale = ActionScale(sim)
    recorded = scale.from_sim(trunk.actions)
    rng = np.random.default_rng([cfg.seed, source])
    variants = [f"noise{s:g}" for s in cfg.branch_noise] + ["random"]
    written = 0
    for p, t in enumerate(_branch_points(trunk.length, cfg)):
        # Drawn for every point, written or not, so a resumed run perturbs exactly as before.
        seqs = perturbed_sequences(recorded[t : t + cfg.branch_steps], cfg.branch_noise, rng)[1:]
        for m, (name, seq) in enumerate(zip(variants, seqs, strict=True)):
            eid = branch_id(source, 1 + p * len(variants) + m)
            if store.has(eid):
                continue
            ep = _run_branch(sim, states[t], scale.to_sim(seq))
            ep.meta.update(
                policy="branch", seed=sim_seed, branch_of=branch_id(source, 0), branch_step=t,
                variant=name, init_state_id=-1 if init_id is None else init_id,
            )  # fmt: skip
            store.write(eid, ep)
            written += 1
    trunk.meta.update(policy="branch", trunk_policy=cfg.branch_source, branch_variants=variants)
    store.write(branch_id(source, 0), trunk)
    return trunk, written


def _run_branch(sim: Any, state: np.ndarray, actions: np.ndarray) -> Episode:
    """Restore ``state`` and execute ``actions`` (simulator units), every frame recorded."""
    trace = _Trace(sim.set_sim_state(state))
    for a in actions:
        trace.add(a, sim.step(a))
    return trace.episode(sim, state)


def _worker(cfg: CollectConfig, indices: list[int], emit: Emit) -> None:
    from rla_gym.sims.factory import make_sim
    from rla_gym.sims.policies import make_policy

    store = EpisodeStore(cfg.out)
    sim = make_sim(cfg.sim, cfg.task, resolution=cfg.resolution)
    try:
        max_steps = cfg.max_steps or sim.max_steps
        for i in indices:
            if cfg.policy == "branch":
                trunk, n = record_branches(sim, cfg, i, store, max_steps)
                emit((trunk.meta["success_any"], trunk.length + n * cfg.branch_steps))
                continue
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
    store = open_dataset(cfg.out, cfg.sim, cfg.task, cfg.resolution)
    done = (lambda i: branch_id(i, 0)) if cfg.policy == "branch" else (
        lambda i: store.episode_id(cfg.policy, i))  # fmt: skip
    todo = [i for i in range(cfg.episodes) if not store.has(done(i))]
    return record_missing(_worker, cfg, todo, cfg, f"collect {cfg.sim} {cfg.policy}", progress)


def open_dataset(out: Path, sim: str, task: str | None, resolution: int) -> EpisodeStore:
    """The dataset folder ``out``, ready to record ``sim``/``task`` episodes into: files a killed
    writer left are removed and ``dataset.json`` is written, or checked against the task.

    One simulator is built here, in the parent, so a bad sim/task/resolution or a missing extra
    fails with a clear message before any worker starts.

    Raises:
        RLAGymError: ``out`` holds another task or resolution.
    """
    from rla_gym.sims.factory import make_sim

    store = EpisodeStore(out)
    store.clean_partial()
    probe = make_sim(sim, task, resolution=resolution)
    try:
        store.init_manifest(sim_manifest(probe))
    finally:
        probe.close()
    return store


def record_missing(
    worker: Callable[[Any, list[int], Emit], None],
    args: Any,
    todo: list[int],
    cfg: Any,
    desc: str,
    progress: bool,
) -> dict[str, Any]:
    """Episodes ``todo`` recorded by ``worker`` (which emits ``(success, control steps)`` per
    episode) in ``cfg.workers`` processes, and the run's summary: ``recorded``, ``skipped``
    (``cfg.episodes`` minus ``todo``), ``successes``, ``total_steps``, ``config`` (``cfg``) and,
    once an episode was recorded, ``success_rate``."""
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
        worker,
        args,
        todo,
        cfg.workers,
        desc=desc,
        progress=progress,
        postfix=lambda: {"success": f"{summary['successes']}/{summary['recorded']}"},
    )
    for ok, length in results:
        summary["recorded"] += 1
        summary["successes"] += int(ok)
        summary["total_steps"] += int(length)
    summary["success_rate"] = summary["successes"] / max(summary["recorded"], 1)
    return summary


def sim_manifest(sim: Any) -> dict[str, Any]:
    """What ``dataset.json`` says about the simulator task of a dataset recorded from ``sim``
    (an adapter): task, camera, action bounds, horizon, init states and the body fields."""
    return {
        "sim": sim.sim,
        "task": sim.task,
        "resolution": sim.resolution,
        "action_dim": sim.action_dim,
        "action_low": sim.action_low.tolist(),
        "action_high": sim.action_high.tolist(),
        "max_steps": sim.max_steps,
        "num_init_states": sim.num_init_states,
        **_proprio_manifest(sim.sim),
    }


def _proprio_manifest(sim: str) -> dict[str, Any]:
    """What the episodes' ``proprio`` holds, for ``dataset.json``: the raw fields the simulator
    records and the body vector made from them (:mod:`rla_gym.data.proprio`); ``{}`` for a
    simulator without a documented body vector."""
    from rla_gym.data.proprio import BODY_SPECS

    if sim not in BODY_SPECS:
        return {}
    spec = BODY_SPECS[sim]
    return {"proprio": {"raw_fields": list(spec.raw_fields), "body": spec.to_dict()}}
