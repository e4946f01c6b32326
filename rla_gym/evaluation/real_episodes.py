"""The real half of :mod:`rla_gym.evaluation.dream_vs_real`: every policy's episodes in the real
simulator from the same starts, their frames encoded at chunk boundaries, run in worker
processes and cached on disk per (job, policy, start), so an interrupted comparison resumes and a
second one reuses them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rla_gym.features import sha256_file
from rla_gym.utils.io import atomic_path
from rla_gym.utils.parallel import Emit, imap_workers

__all__ = ["SCRIPTED", "PolicySpec", "RealJob", "real_rollouts"]

SCRIPTED = ("random", "expert", "noisy")


@dataclass(frozen=True)
class PolicySpec:
    """One policy to compare.

    Attributes:
        name: label in reports (also the cache file prefix).
        kind: ``"saved"``, ``"random"``, ``"expert"`` or ``"noisy"``.
        path: policy folder for ``saved``.
        noise: action-noise std of ``noisy`` (fraction of the half range).
    """

    name: str
    kind: str
    path: str | None = None
    noise: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("saved", *SCRIPTED):
            raise ValueError(
                f"policy kind must be saved, random, expert or noisy, got {self.kind!r}"
            )
        if self.kind == "saved" and not self.path:
            raise ValueError(f"policy {self.name!r}: kind 'saved' needs a path")
        if (self.kind == "noisy") != (self.noise > 0):
            raise ValueError(
                f"policy {self.name!r}: noise > 0 goes with kind 'noisy' only, "
                f"got kind {self.kind!r}, noise {self.noise}"
            )

    @property
    def scripted(self) -> bool:
        """Acts on privileged simulator state (replayed open loop in the dream)."""
        return self.kind in SCRIPTED


# --------------------------------------------------------------------------- real side
@dataclass(frozen=True)
class RealJob:
    """The real episodes' simulator, encoder and length (from a bundle's manifest).

    Attributes:
        sim: simulator name.
        task: task within it.
        resolution: camera resolution.
        encoder: encoder name.
        chunk: ``K``.
        horizon: ``E``, chunks per episode.
        seed: reset seed of start ``i`` is ``seed + i`` (LIBERO: init state ``i``).
    """

    sim: str
    task: str
    resolution: int
    encoder: str
    chunk: int
    horizon: int
    seed: int


def _identity(job: RealJob, spec: PolicySpec) -> dict[str, Any]:
    """What makes a policy's real episodes of this job reusable (hashed once per policy)."""
    identity: dict[str, Any] = {"job": dataclasses.asdict(job), "spec": dataclasses.asdict(spec)}
    if spec.kind == "saved":
        # A saved policy is its weights, not its folder: a rebuilt bundle keeps the path
        # <bundle>/policy but may ship another policy, whose real episodes must not be reused.
        weights = Path(str(spec.path)) / "model.safetensors"
        identity["weights"] = sha256_file(weights) if weights.exists() else None
    return identity


def _key(identity: dict[str, Any], index: int) -> str:
    """The cache key of one episode: the policy's :func:`_identity` and the start index."""
    return json.dumps({**identity, "index": index}, sort_keys=True)


def _cache_file(cache_dir: Path, key: str, spec: PolicySpec, index: int) -> Path:
    # The key's hash in the name: episodes of other jobs (seeds, horizons) live side by side.
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return cache_dir / f"{spec.name}_{index:03d}_{digest}.npz"


def _load_cached(path: Path, key: str) -> dict[str, Any] | None:
    """A cached episode if its key matches (same job, policy and start), else ``None``."""
    if not path.exists():
        return None
    with np.load(path) as z:
        if str(z["key"]) != key:
            return None
        return {k: z[k] for k in z.files if k != "key"}


def _real_worker(
    args: tuple[RealJob, str | None], items: list[tuple[PolicySpec, int, str]], emit: Emit
) -> None:
    from rla_gym.agents import ActorCritic
    from rla_gym.data.proprio import FEATURES, PROPRIO, body_vector
    from rla_gym.envs.real import RealFeatureEnv
    from rla_gym.evaluation.real import RealEvalConfig, rollout
    from rla_gym.evaluation.scripted import run_scripted_episode

    job, cache_dir = args
    torch.set_num_threads(1)
    # The full horizon whatever happens: success is scored per chunk, not an episode end.
    env = RealFeatureEnv(
        sim=job.sim,
        task=job.task,
        resolution=job.resolution,
        encoder=job.encoder,
        chunk=job.chunk,
        max_episode_steps=job.horizon,
        terminate_on_success=False,
        # The real body beside the features: a dream that carries the body starts from it and
        # its reward reads it; a policy trained on features alone ignores it.
        obs_mode="features+proprio",
    )
    cfg = RealEvalConfig(
        sim=job.sim,
        task=job.task,
        resolution=job.resolution,
        encoder=job.encoder,
        chunk=job.chunk,
        seed=job.seed,
        max_steps=job.horizon * job.chunk,
    )
    loaded: dict[str, Any] = {}
    try:
        for spec, index, key in items:
            t0 = time.perf_counter()
            if spec.scripted:
                r = run_scripted_episode(
                    env.sim,
                    spec.kind,
                    index,
                    cfg,
                    spec.noise,
                    frames="chunks",
                    stop_on_success=False,
                )
                feats = env.encoder.encode(r["frames"])
                row = {
                    "features": feats,
                    "sim_return": r["return"],
                    "chunk_success": r["step_success"].reshape(job.horizon, -1).any(1),
                    "actions": r["actions"].reshape(job.horizon, -1),
                    # The body at the same chunk boundaries as the features: a dream that
                    # carries the robot's body starts from (and is compared with) it.
                    "body": body_vector(job.sim, r["proprio"][:: job.chunk]),
                }
            else:
                if spec.path not in loaded:
                    loaded[spec.path] = ActorCritic.load(spec.path).eval()
                model = loaded[spec.path]

                def policy(f: np.ndarray, model: Any = model) -> np.ndarray:
                    return model.predict(f, deterministic=True)[0]

                init_id = index if env.sim.num_init_states else None
                r = rollout(env, policy, job.seed + index, init_id, keep_observations=True)
                row = {
                    "features": np.stack([o[FEATURES] for o in r["observations"]]),
                    "sim_return": r["return"],
                    "chunk_success": r["chunk_success"],
                    "body": np.stack([o[PROPRIO] for o in r["observations"]]),
                }
            row["features"] = np.asarray(row["features"], np.float16)
            row["seconds"] = time.perf_counter() - t0
            if cache_dir is not None:
                with (
                    atomic_path(_cache_file(Path(cache_dir), key, spec, index)) as tmp,
                    open(tmp, "wb") as fh,
                ):
                    np.savez(fh, key=key, **row)
            emit({"policy": spec.name, "index": index, **row})
    finally:
        env.close()


def real_rollouts(
    job: RealJob,
    specs: list[PolicySpec],
    indices: list[int],
    workers: int = 1,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[tuple[str, int], dict[str, Any]]:
    """Real episodes of every policy from every start (see :mod:`rla_gym.evaluation.dream_vs_real`).

    Args:
        job: simulator, encoder, horizon and seed.
        specs: the policies.
        indices: start indices (LIBERO init states; seed offsets elsewhere).
        workers: simulator processes.
        cache_dir: keep every finished episode here and reuse it when the same job, policy and
            start come again (an interrupted run resumes where it stopped).
        progress: show a progress bar.

    Returns:
        ``{(policy name, index): row}``; a row holds ``features`` (``float16 (E + 1, N, D)``:
        the reset frame's and every chunk's), ``chunk_success`` (``bool (E,)``), ``sim_return``,
        ``seconds`` (wall-clock of the episode when it ran), ``body`` (``float32 (E + 1, P)``,
        :func:`~rla_gym.data.proprio.body_vector` at the same frames as ``features``) and, for
        scripted policies, ``actions`` (``float32 (E, K * A)``, normalised).
    """
    out: dict[tuple[str, int], dict[str, Any]] = {}
    todo = []
    for spec in specs:
        identity = _identity(job, spec)
        for i in indices:
            cached, key = None, _key(identity, i)
            if cache_dir is not None:
                cached = _load_cached(_cache_file(Path(cache_dir), key, spec, i), key)
                if cached is not None and "body" not in cached:
                    cached = None  # cached before every row kept the body: run it again
            if cached is None:
                # The worker stores the episode under the key computed here.
                todo.append((spec, i, key))
            else:
                out[(spec.name, i)] = {**cached, "cached": True}
    # Interleaved by start, so each worker sees every policy (one model load per worker).
    todo.sort(key=lambda item: item[1])
    rows = imap_workers(
        _real_worker,
        (job, None if cache_dir is None else str(cache_dir)),
        todo,
        workers,
        desc=f"real {job.sim}",
        progress=progress,
    )
    for r in rows:
        out[(r.pop("policy"), r.pop("index"))] = {**r, "cached": False}
    return out
