"""Record a feature policy's real episodes as a dataset: the policy's own states as training data.

A world model trained on scripted demonstrations has rarely seen what a learned policy does
wrong: a grasp that slips, a gripper that closes beside the object. In closed loop such a
dream forgives the policy (``benchmarks/closed_loop.py``: on Lift, noisy bases that fail in
reality succeed in the dream). :func:`record_policy` drives the real simulator with a saved
feature policy, optionally perturbed (:class:`~rla_gym.evaluation.perturbed.Perturbed`), and
writes every control step (frame, action, proprio, reward, success) as an
:class:`~rla_gym.data.episodes.Episode` of an :class:`~rla_gym.data.episodes.EpisodeStore`,
exactly as ``rla-gym collect`` writes scripted episodes; ``rla-gym encode`` and ``train-wm``
then take it like any dataset.

The policy sees what it sees in a real evaluation: the bundle's encoder on the frame reached at
the end of each chunk (and the real body if it reads it), and decides every ``K`` control steps.
Episode ``i`` starts from reset seed ``seed + i`` (LIBERO: init state ``i`` modulo the task's
count) and its perturbation draws come from the same seed; the default ``seed`` keeps clear of
the evaluation seeds ``0, 1, ...`` the benchmarks use. Episodes are written atomically as they
finish and a re-run records only the missing ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rla_gym.envs.body import FEATURES, PROPRIO
from rla_gym.evaluation.perturbed import Perturbed
from rla_gym.utils.io import load_json
from rla_gym.utils.parallel import Emit

__all__ = ["ChunkActor", "RecordConfig", "record_policy"]


@dataclass(frozen=True, kw_only=True)
class RecordConfig:
    """Which policy, perturbed how, recorded where."""

    out: Path
    """dataset folder (created if missing; must hold the bundle's task at its resolution)"""
    bundle: str = "libero"
    """bundle (an embedded suite name or a folder) whose real task, camera, encoder and chunk
    the policy acts with"""
    policy: Path | None = None
    """saved ``ActorCritic`` folder on the bundle's features and chunk (default: the bundle's
    base policy, ``<bundle>/policy``)"""
    name: str = "closedloop"
    """episode-id prefix: episode ``i`` is ``<name>_<i:06d>``; one name per perturbation"""
    noise: float = 0.0
    """std of Gaussian noise added to every chunk (normalised units), then clipped"""
    mix: float = 0.0
    """probability that a chunk is uniform random instead of the policy's"""
    every: int = 1
    """the policy decides every ``every``-th chunk and repeats its chunk in between"""
    episodes: int = 20
    """episode indices ``0..episodes-1`` are recorded (existing ones are skipped)"""
    seed: int = 100_000
    """episode ``i``: reset seed and perturbation seed ``seed + i``"""
    workers: int = 2
    """simulator processes"""
    max_steps: int | None = None
    """control-step limit (default: the task's evaluation horizon)"""
    steps_after_success: int = 10
    """control steps still recorded after the first success (the settled end state)"""

    def __post_init__(self) -> None:
        from rla_gym.data.episodes import EpisodeStore

        EpisodeStore(self.out).episode_path(f"{self.name}_000000")  # a bad name raises here
        if self.episodes < 0 or self.workers < 1 or self.steps_after_success < 0:
            raise ValueError("episodes and steps_after_success must be >= 0, workers >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")


class ChunkActor:
    """A feature policy as a simulator :class:`~rla_gym.sims.base.Policy`: at every ``K``-th
    control step it encodes the frame, asks the policy for a chunk ``(K * A,)`` in ``[-1, 1]``
    and then plays its actions one per step, in simulator units.

    Args:
        policy: ``features (N, D)`` (or ``{"features", "proprio"}`` if ``policy.reads_body``)
            ``-> float32 (K * A,)``, with ``reset(seed)``.
        encoder: the frozen encoder, ``uint8 (B, R, R, 3) -> (B, N, D)``.
        sim: the simulator adapter (its name, action bounds and dimension).
        chunk: ``K``.
    """

    def __init__(self, policy: Any, encoder: Any, sim: Any, chunk: int) -> None:
        from rla_gym.sims.policies import ActionScale

        self.policy, self.encoder, self.chunk = policy, encoder, int(chunk)
        self.sim_name, self.action_dim = sim.sim, int(sim.action_dim)
        self.scale = ActionScale(sim)
        self.episode_seed = 0
        self.t, self.plan = 0, np.zeros((self.chunk, self.action_dim), np.float32)

    def reset(self, obs: Any) -> None:
        self.policy.reset(self.episode_seed)
        self.t = 0

    def __call__(self, obs: Any) -> np.ndarray:
        from rla_gym.data.proprio import body_vector

        if self.t % self.chunk == 0:
            feats = self.encoder.encode(obs.frame[None])[0].astype(np.float32, copy=False)
            seen: Any = feats
            if getattr(self.policy, "reads_body", False):
                seen = {FEATURES: feats, PROPRIO: body_vector(self.sim_name, obs.proprio)}
            act = np.clip(np.asarray(self.policy(seen), np.float32), -1.0, 1.0)
            self.plan = self.scale.to_sim(act.reshape(self.chunk, self.action_dim))
        a = self.plan[self.t % self.chunk]
        self.t += 1
        return a


def _setup(cfg: RecordConfig) -> tuple[dict[str, Any], Perturbed]:
    """The bundle's manifest and the perturbed policy's factory; a policy that does not fit the
    bundle's features and chunk fails here, before any simulator starts."""
    from rla_gym.agents import ActorCritic, SpaceMismatchError
    from rla_gym.envs.artifacts import resolve_artifacts

    folder = Path(cfg.bundle)
    bundle = resolve_artifacts(folder if (folder / "manifest.json").exists() else None, cfg.bundle)
    man = load_json(bundle / "manifest.json")
    path = Path(cfg.policy) if cfg.policy is not None else bundle / "policy"
    k, a = int(man["chunk"]), int(man["action_dim"])
    policy = ActorCritic.load(path)
    features = (int(man["num_tokens"]), int(man["feature_dim"]))
    if tuple(policy.observation_shape) != features or policy.action_dim != k * a:
        raise SpaceMismatchError(
            f"the policy at {path} reads {tuple(policy.observation_shape)} and outputs "
            f"{policy.action_dim} values; the bundle {bundle} shows features {features} and takes "
            f"chunks of K={k} x A={a} = {k * a}"
        )
    return man, Perturbed(str(path), k * a, noise=cfg.noise, mix=cfg.mix, every=cfg.every)


def _worker(args: tuple[RecordConfig, dict[str, Any], Perturbed], indices: list[int],
            emit: Emit) -> None:  # fmt: skip
    from rla_gym.data.collect import record_episode
    from rla_gym.data.episodes import EpisodeStore
    from rla_gym.features import make_encoder
    from rla_gym.sims.factory import make_sim

    cfg, man, spec = args
    store = EpisodeStore(cfg.out)
    sim = make_sim(man["sim"], man["task"], resolution=int(man["resolution"]))
    actor = ChunkActor(spec(), make_encoder(man["encoder"]), sim, int(man["chunk"]))
    try:
        limit = cfg.max_steps or sim.max_steps
        for i in indices:
            actor.episode_seed = seed = cfg.seed + i
            init_id = i % sim.num_init_states if sim.num_init_states else None
            ep = record_episode(sim, actor, seed, init_id, limit, cfg.steps_after_success)
            ep.meta.update(policy=cfg.name, policy_noise=cfg.noise, policy_mix=cfg.mix,
                           policy_every=cfg.every, chunk=int(man["chunk"]))  # fmt: skip
            store.write(store.episode_id(cfg.name, i), ep)
            emit((ep.meta["success_any"], ep.length))
    finally:
        sim.close()


def record_policy(cfg: RecordConfig, progress: bool = True) -> dict[str, Any]:
    """Record the missing episodes of ``cfg`` and return a summary.

    Returns:
        :func:`rla_gym.data.collect.record_missing`'s summary.

    Raises:
        SpaceMismatchError: the policy does not fit the bundle.
        RLAGymError: ``out`` holds another task or resolution.
    """
    from rla_gym.data.collect import open_dataset, record_missing

    man, spec = _setup(cfg)
    store = open_dataset(cfg.out, man["sim"], man["task"], int(man["resolution"]))
    todo = [i for i in range(cfg.episodes) if not store.has(store.episode_id(cfg.name, i))]
    return record_missing(_worker, (cfg, man, spec), todo, cfg, f"record {cfg.name}", progress)
