"""Episode store: one HDF5 file per episode, cached features beside them.

Layout of a dataset folder::

    dataset.json                      sim, task, resolution, action size (one task per folder)
    episodes/<policy>_<index>.h5      frames, actions, proprio, rewards, success (+ attrs)
    features/<encoder>/<episode>.h5   float16 patch features with the encoder fingerprint

Why HDF5 (h5py): one self-describing file per episode with chunked, compressed arrays and partial
reads (features can be sliced without loading frames). One file per episode makes atomic writes
simple (temp file + rename), so an interrupted collection never leaves a half-written episode under
a final name and every completed episode survives. Zarr would store each chunk as a separate file,
which makes "the episode exists" a non-atomic, many-file property.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from rla_gym.errors import CorruptFileError, EncoderMismatchError, RLAGymError
from rla_gym.utils.io import atomic_path, load_json, save_json

__all__ = ["FORMAT_VERSION", "Episode", "EpisodeStore", "FeatureEpisode"]

FORMAT_VERSION = 1
_EPISODE_ID = re.compile(r"^[a-z][a-z0-9-]*_\d{6}$")


@dataclass
class Episode:
    """One recorded episode of ``T`` control steps.

    Attributes:
        frames: ``uint8 (T+1, R, R, 3)`` camera frames; frame ``t`` is seen before action ``t``.
        actions: ``float32 (T, A)`` actions exactly as sent to the simulator.
        proprio: ``float32 (T+1, P)`` robot proprioception per frame.
        rewards: ``float32 (T,)`` the simulator's reward after each action.
        success: ``bool (T+1,)`` task success per frame.
        meta: sim, task, policy, seed, init_state_id and any other scalar attributes.
        init_state: ``float64 (S,)`` physics state right after reset (re-creates the start exactly).
    """

    frames: np.ndarray
    actions: np.ndarray
    proprio: np.ndarray
    rewards: np.ndarray
    success: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    init_state: np.ndarray | None = None

    def __post_init__(self) -> None:
        t = len(self.actions)
        shapes = {
            "frames": (len(self.frames), t + 1),
            "proprio": (len(self.proprio), t + 1),
            "rewards": (len(self.rewards), t),
            "success": (len(self.success), t + 1),
        }
        for name, (got, want) in shapes.items():
            if got != want:
                raise ValueError(
                    f"episode {name} has length {got}, expected {want} for {t} actions"
                )

    @property
    def length(self) -> int:
        """Number of actions ``T``."""
        return len(self.actions)


@dataclass
class FeatureEpisode:
    """Cached features of one episode, with the actions that connect them.

    Attributes:
        episode_id: the episode's id in its store.
        features: ``float32 (T+1, N, D)`` patch features per frame.
        actions: ``float32 (T, A)``.
        success: ``bool (T+1,)``.
        fingerprint: the encoder fingerprint the features were made with.
        grid: token grid ``(gh, gw)`` with ``gh * gw == N``.
    """

    episode_id: str
    features: np.ndarray
    actions: np.ndarray
    success: np.ndarray
    fingerprint: str
    grid: tuple[int, int]


def _corrupt(path: Path, err: Exception) -> CorruptFileError:
    return CorruptFileError(
        f"{path} is corrupt or truncated ({err}). Delete it and rerun the command that wrote it "
        f"(`rla-gym collect` skips finished episodes and re-records only missing ones; "
        f"`rla-gym encode` re-encodes only missing feature files)."
    )


class EpisodeStore:
    """A dataset folder of episodes for one simulator task.

    Args:
        root: the dataset folder (created on first write).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ---------------------------------------------------------------- manifest
    @property
    def manifest_path(self) -> Path:
        return self.root / "dataset.json"

    def manifest(self) -> dict[str, Any]:
        """The dataset description, or raise if this folder holds no dataset."""
        if not self.manifest_path.exists():
            raise RLAGymError(
                f"{self.root} is not an rla-gym dataset (no dataset.json); create one with "
                f"`rla-gym collect --out {self.root} ...`"
            )
        return load_json(self.manifest_path)

    def init_manifest(self, info: dict[str, Any]) -> dict[str, Any]:
        """Create ``dataset.json``, or check that ``info`` agrees with the existing one.

        Raises:
            RLAGymError: the folder already holds another sim/task/resolution.
        """
        info = {"format_version": FORMAT_VERSION, **info}
        if self.manifest_path.exists():
            old = load_json(self.manifest_path)
            for key in ("sim", "task", "resolution", "action_dim"):
                if key in info and old.get(key) != info[key]:
                    raise RLAGymError(
                        f"{self.root} holds {key}={old.get(key)!r} episodes but {info[key]!r} was "
                        f"requested; one dataset folder holds one task at one resolution — "
                        f"choose another --out folder"
                    )
            return old
        save_json(info, self.manifest_path)
        return info

    # ---------------------------------------------------------------- episodes
    @property
    def episode_dir(self) -> Path:
        return self.root / "episodes"

    @staticmethod
    def episode_id(policy: str, index: int) -> str:
        """The id of episode ``index`` recorded with ``policy``, e.g. ``"expert_000007"``."""
        return f"{policy}_{index:06d}"

    def episode_path(self, episode_id: str) -> Path:
        if not _EPISODE_ID.match(episode_id):
            raise ValueError(f"bad episode id {episode_id!r}; expected '<policy>_<6 digits>'")
        return self.episode_dir / f"{episode_id}.h5"

    def episode_ids(self, policy: str | None = None) -> list[str]:
        """Sorted ids of completed episodes (optionally of one policy)."""
        if not self.episode_dir.exists():
            return []
        ids = sorted(p.stem for p in self.episode_dir.glob("*.h5") if _EPISODE_ID.match(p.stem))
        if policy is not None:
            ids = [i for i in ids if i.rsplit("_", 1)[0] == policy]
        return ids

    def has(self, episode_id: str) -> bool:
        return self.episode_path(episode_id).exists()

    def clean_partial(self) -> int:
        """Remove temporary files left by a killed writer; returns how many were removed."""
        n = 0
        for d in (self.episode_dir, self.root / "features"):
            if d.exists():
                for p in d.rglob(".*.tmp"):
                    p.unlink(missing_ok=True)
                    n += 1
        return n

    def write(self, episode_id: str, episode: Episode) -> Path:
        """Write one episode atomically; an existing episode with that id is replaced."""
        path = self.episode_path(episode_id)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset(
                "frames",
                data=episode.frames,
                compression="lzf",
                chunks=(1, *episode.frames.shape[1:]),
            )
            f.create_dataset("actions", data=episode.actions.astype(np.float32))
            f.create_dataset("proprio", data=episode.proprio.astype(np.float32))
            f.create_dataset("rewards", data=episode.rewards.astype(np.float32))
            f.create_dataset("success", data=episode.success.astype(bool))
            if episode.init_state is not None:
                f.create_dataset("init_state", data=np.asarray(episode.init_state, np.float64))
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["length"] = episode.length
            for k, v in episode.meta.items():
                f.attrs[k] = "" if v is None else v
        return path

    def read(self, episode_id: str, frames: bool = True) -> Episode:
        """Read one episode (``frames=False`` skips the images and returns an empty frame array).

        Raises:
            KeyError: no such episode.
            CorruptFileError: the file is truncated or inconsistent.
        """
        path = self.episode_path(episode_id)
        if not path.exists():
            raise KeyError(f"episode {episode_id!r} not found in {self.root}")
        try:
            with h5py.File(path, "r") as f:
                t = int(f.attrs["length"])
                meta = {k: _attr(v) for k, v in f.attrs.items()}
                ep = Episode(
                    frames=f["frames"][()] if frames else np.zeros((t + 1, 0, 0, 3), np.uint8),
                    actions=f["actions"][()],
                    proprio=f["proprio"][()],
                    rewards=f["rewards"][()],
                    success=f["success"][()],
                    meta=meta,
                    init_state=f["init_state"][()] if "init_state" in f else None,
                )
        except (OSError, KeyError, ValueError) as err:
            raise _corrupt(path, err) from err
        return ep

    def split(
        self, val_fraction: float = 0.1, seed: int = 0, ids: Iterable[str] | None = None
    ) -> tuple[list[str], list[str]]:
        """Deterministic train/validation split by episode.

        Each episode's side depends only on its id and ``seed`` (a hash), so collecting more
        episodes never moves an existing episode between train and validation. With at least two
        episodes, validation gets at least one.
        """
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        ids = sorted(self.episode_ids() if ids is None else ids)

        def u(eid: str) -> float:
            h = hashlib.sha256(f"{seed}:{eid}".encode()).digest()
            return int.from_bytes(h[:8], "big") / 2**64

        val = [i for i in ids if u(i) < val_fraction]
        if not val and val_fraction > 0 and len(ids) >= 2:
            val = [min(ids, key=u)]
        train = [i for i in ids if i not in set(val)]
        return train, val

    # ---------------------------------------------------------------- features
    def feature_dir(self, encoder_name: str) -> Path:
        return self.root / "features" / encoder_name

    def feature_path(self, episode_id: str, encoder_name: str) -> Path:
        return self.feature_dir(encoder_name) / f"{episode_id}.h5"

    def feature_fingerprint(self, encoder_name: str) -> str | None:
        """Fingerprint of the features cached for ``encoder_name`` (``None`` if none are)."""
        p = self.feature_dir(encoder_name) / "encoder.json"
        return load_json(p)["fingerprint"] if p.exists() else None

    def begin_features(self, encoder_name: str, fingerprint: str, overwrite: bool = False) -> None:
        """Claim the feature folder of ``encoder_name`` for ``fingerprint``.

        Raises:
            EncoderMismatchError: features of another fingerprint are cached there and
                ``overwrite`` is false.
        """
        old = self.feature_fingerprint(encoder_name)
        if old is not None and old != fingerprint:
            if not overwrite:
                raise EncoderMismatchError(
                    f"{self.feature_dir(encoder_name)} holds features of encoder {old!r}, not "
                    f"{fingerprint!r}; pass --overwrite to replace them"
                )
            for p in self.feature_dir(encoder_name).glob("*.h5"):
                p.unlink()
        save_json({"fingerprint": fingerprint}, self.feature_dir(encoder_name) / "encoder.json")

    def write_features(
        self,
        episode_id: str,
        encoder_name: str,
        features: np.ndarray,
        fingerprint: str,
        grid: tuple[int, int],
    ) -> Path:
        """Store ``float (T+1, N, D)`` features of one episode as float16, atomically."""
        path = self.feature_path(episode_id, encoder_name)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            # float16 halves disk and I/O; patch features of CNN/ViT encoders are O(1) in scale.
            f.create_dataset("features", data=features.astype(np.float16))
            f.attrs["fingerprint"] = fingerprint
            f.attrs["grid"] = np.asarray(grid, np.int64)
        return path

    def has_features(self, episode_id: str, encoder_name: str) -> bool:
        return self.feature_path(episode_id, encoder_name).exists()

    def load_features(
        self, episode_id: str, encoder_name: str, expected_fingerprint: str | None = None
    ) -> FeatureEpisode:
        """Cached features of one episode plus its actions.

        Raises:
            KeyError: the features were never computed (run ``rla-gym encode``).
            EncoderMismatchError: they were computed with another encoder than expected.
            CorruptFileError: a file is truncated or its length disagrees with the episode.
        """
        path = self.feature_path(episode_id, encoder_name)
        if not path.exists():
            raise KeyError(
                f"no {encoder_name} features for episode {episode_id!r} in {self.root}; run "
                f"`rla-gym encode --data {self.root} --encoder {encoder_name}`"
            )
        try:
            with h5py.File(path, "r") as f:
                feats = f["features"][()].astype(np.float32)
                fp = str(_attr(f.attrs["fingerprint"]))
                grid = tuple(int(g) for g in f.attrs["grid"])
        except (OSError, KeyError, ValueError) as err:
            raise _corrupt(path, err) from err
        if expected_fingerprint is not None and fp != expected_fingerprint:
            raise EncoderMismatchError(
                f"features of {episode_id!r} were made with {fp!r}, expected "
                f"{expected_fingerprint!r}; re-encode with `rla-gym encode --overwrite`"
            )
        ep = self.read(episode_id, frames=False)
        if len(feats) != ep.length + 1:
            raise _corrupt(path, ValueError(f"{len(feats)} feature frames for {ep.length} actions"))
        return FeatureEpisode(episode_id, feats, ep.actions, ep.success, fp, (grid[0], grid[1]))


def _attr(v: Any) -> Any:
    """h5py attributes come back as numpy scalars/bytes; make them plain Python values."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v
