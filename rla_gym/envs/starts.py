"""Where a dreamed episode starts: the bundle's reset bank and reference rows on a device.

:class:`StartBank` holds the bank's tensors (and, for a world model that dreams the body, the
body vectors of the same frames) and turns reset options into a :class:`Start`, the state an env
shell copies in. :class:`~rla_gym.envs.core.DreamCore` owns one per bundle and env options.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rla_gym.envs import body as _body
from rla_gym.envs.artifacts import Artifacts, nearest_demo

__all__ = ["Start", "StartBank"]


@dataclass(frozen=True)
class Start:
    """Where one episode starts.

    Attributes:
        features: ``float32 (N, D)`` start features.
        demo: reference demo the reward aligns with.
        t: control step of the start within that demo (0 for init starts).
        source: ``"init"``, ``"demo_random"`` or ``"features"``.
        index: reset-bank index (init), reference row (demo_random) or -1 (features).
        init_state_id: simulator init state of an init start (``-1``: unknown / not an init start).
        previous: ``float32 (N, D)`` features one chunk before the start, for a world model with
            history (``None``: the scene is at rest, the start frame stands in).
        proprio: ``float32 (P,)`` the robot's body at the start, for a world model that dreams
            it (``None`` for a features-only one).
    """

    features: torch.Tensor
    demo: int
    t: int
    source: str
    index: int
    init_state_id: int = -1
    previous: torch.Tensor | None = None
    proprio: torch.Tensor | None = None


def dataset_starts(
    folder: str | Path, art: Artifacts, body: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The first frame of every episode of an encoded dataset, as reset starts of a bundle.

    Args:
        folder: an ``EpisodeStore`` folder with cached features of the bundle's encoder.
        art: the bundle (its simulator, task, resolution and encoder fingerprint must match).
        body: also return every start's body vector (a world model that dreams the body).

    Returns:
        ``features float32 (M, N, D)``, ``bodies float32 (M, P)`` (``None`` without ``body``)
        and ``init_state_ids int64 (M,)`` (``-1`` where the simulator has none).

    Raises:
        ValueError: not a dataset, no episodes, or another simulator / task / resolution.
        KeyError / EncoderMismatchError: episodes not encoded with the bundle's encoder.
    """
    m = art.manifest
    key = (str(m["sim"]), str(m["task"]), int(m["resolution"]), str(m["encoder"]),
           str(m["encoder_fingerprint"]))  # fmt: skip
    return _dataset_starts(str(Path(folder).resolve()), key, body)


@lru_cache(maxsize=4)
def _dataset_starts(
    folder: str, key: tuple[str, str, int, str, str], body: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    # Cached: every env of a run (and every gym.make) reads the same folder once.
    from rla_gym.data.episodes import EpisodeStore
    from rla_gym.data.feature_episodes import load_body

    sim, task, resolution, encoder, fingerprint = key
    store = EpisodeStore(folder)
    if not store.manifest_path.exists():
        raise ValueError(f"reset_starts: {folder} is not a dataset (no dataset.json)")
    man = store.manifest()
    theirs = (man.get("sim"), man.get("task"), int(man.get("resolution", -1)))
    if theirs != (sim, task, resolution):
        raise ValueError(
            f"reset_starts: {folder} holds {theirs[0]} {theirs[1]} at {theirs[2]} px, this bundle "
            f"dreams {sim} {task} at {resolution} px"
        )
    ids = store.episode_ids()
    if not ids:
        raise ValueError(f"reset_starts: {folder} has no episodes; run `rla-gym collect` first")
    feats = [store.load_features(e, encoder, expected_fingerprint=fingerprint).features[0]
             for e in ids]  # fmt: skip
    init = [int(store.read(e, frames=False).meta.get("init_state_id", -1)) for e in ids]
    out = np.stack(feats).astype(np.float32)
    b = np.stack([x[0] for x in load_body(folder, ids)[0]]).astype(np.float32) if body else None
    return out, b, np.asarray(init, np.int64)


class StartBank:
    """The starts of a bundle: reset bank, reference rows and their bodies, on ``device``.

    Args:
        art: the loaded bundle.
        device: where the envs' state lives.
        body_fields: the world model's ``proprio_fields``; with them every start carries its
            body (the bank must hold it: ``Artifacts.load_world_model`` checked), without them
            none does.
        reset_demo_fraction: ``RLAWorldConfig.reset_demo_fraction``.
        reset_starts: ``RLAWorldConfig.reset_starts``: a dataset folder whose episodes' first
            frames replace the bundle's reset bank (:func:`dataset_starts`).

    Attributes:
        reference: ``float32 (R, T_ref, N, D)`` reference rows (every ``K``-th frame).
        reference_len: ``int64 (R,)`` valid rows per demo (numpy).
        reset_features: ``float32 (M, N, D)`` reset-bank starts.
        reset_body: ``float32 (M, P)`` their bodies (``None`` without ``body_fields``).
        reference_body: ``float32 (R, T_ref, P)`` the reference rows' bodies (likewise).
    """

    def __init__(
        self,
        art: Artifacts,
        device: torch.device,
        body_fields: tuple[str, ...] = (),
        reset_demo_fraction: float = 0.0,
        reset_starts: str | None = None,
    ) -> None:
        self.device, self.chunk = device, art.chunk
        self.num_tokens = int(art.manifest["num_tokens"])
        self.feature_dim = int(art.manifest["feature_dim"])
        self.body_fields, self.reset_demo_fraction = tuple(body_fields), reset_demo_fraction
        self.reference = torch.from_numpy(art.reference).to(device)
        self.reference_len = art.reference_len
        self.reset_features = torch.from_numpy(art.reset_features).to(device)
        self.reset_demo, self.reset_init = art.reset_demo, art.reset_init
        self._ref_frame0 = art.reference[:, 0]
        self.reset_body = self.reference_body = None
        if self.body_fields:
            if art.reset_proprio is None or art.reference_proprio is None:
                raise ValueError(
                    f"bundle {art.path} carries no body vectors, but the world model dreams the "
                    f"body ({', '.join(self.body_fields)}); rebuild it with build-bundle"
                )
            self.reset_body = torch.from_numpy(art.reset_proprio).to(device)
            self.reference_body = torch.from_numpy(art.reference_proprio).to(device)
        if reset_starts is not None:
            feats, bodies, init = dataset_starts(reset_starts, art, bool(self.body_fields))
            self.reset_features = torch.from_numpy(feats).to(device)
            self.reset_init = init
            # Each start's reward aligns with the demo whose first frame is nearest, the rule
            # that aligned the bundle's own bank.
            self.reset_demo = np.array([nearest_demo(f, self._ref_frame0) for f in feats])
            if bodies is not None:
                self.reset_body = torch.from_numpy(bodies).to(device)

    def sample(self, rng: np.random.Generator, options: dict[str, Any] | None) -> Start:
        """Draw a start with ``rng`` (the env's ``np_random``).

        Options: ``{"start": "init" | "demo_random", "index": int}``. ``"init"`` (default, or
        ``"demo_random"`` with probability ``RLAWorldConfig.reset_demo_fraction``) picks
        reset-bank entry ``index`` (random if absent); ``"demo_random"`` picks reference demo
        ``index`` (random if absent) and a uniformly random interior row of it;
        ``{"start": "features", "features": (N, D), "demo": int}`` starts from the given
        features (see :meth:`from_features`). A start of a world model that dreams the body
        carries its body vector: the bank's (the start's own frame) or ``options["proprio"]``.
        """
        options = dict(options or {})
        index = options.get("index")
        kind = options.get("start")
        if kind is None:
            # Drawn only when the option is on, so seeded resets stay as they were without it.
            frac = self.reset_demo_fraction
            mid = frac > 0 and index is None and rng.random() < frac
            kind = "demo_random" if mid else "init"
        if kind == "features":
            if "features" not in options:
                raise ValueError(
                    "options['start'] == 'features' needs options['features'], "
                    f"an ({self.num_tokens}, {self.feature_dim}) array"
                )
            return self.from_features(
                options["features"],
                options.get("demo"),
                options.get("previous_features"),
                options.get("proprio"),
            )
        if kind == "init":
            m = len(self.reset_features)
            i = int(rng.integers(m)) if index is None else int(index)
            if not 0 <= i < m:
                raise ValueError(f"options['index'] must be in [0, {m}) for start='init', got {i}")
            return Start(
                self.reset_features[i],
                int(self.reset_demo[i]),
                0,
                "init",
                i,
                int(self.reset_init[i]),
                proprio=None if self.reset_body is None else self.reset_body[i],
            )
        if kind == "demo_random":
            r = len(self.reference)
            d = int(rng.integers(r)) if index is None else int(index)
            if not 0 <= d < r:
                raise ValueError(
                    f"options['index'] must be in [0, {r}) for start='demo_random', got {d}"
                )
            # Interior rows only: row 0 is an init start, the last row is already the goal.
            n_rows = int(self.reference_len[d])
            j = int(rng.integers(1, n_rows - 1)) if n_rows > 2 else 0
            prev = self.reference[d, j - 1] if j > 0 else None  # the demo one chunk earlier
            body = None if self.reference_body is None else self.reference_body[d, j]
            t = j * self.chunk
            return Start(self.reference[d, j], d, t, "demo_random", j, previous=prev, proprio=body)
        raise ValueError(
            f"options['start'] must be 'init', 'demo_random' or 'features', got {kind!r}"
        )

    def from_features(
        self, features: Any, demo: int | None = None, previous: Any = None, proprio: Any = None
    ) -> Start:
        """A start at given features, e.g. the encoded first frame of a real episode.

        Args:
            features: ``(N, D)`` features of the bundle's encoder (an observation's shape).
            demo: reference demo the reward aligns with (``None``: the demo whose first frame is
                nearest in mean L1, the rule that aligns the reset bank).
            previous: ``(N, D)`` features one chunk before ``features`` (option
                ``"previous_features"``), read by a world model with history; ``None``: at rest.
            proprio: ``(P,)`` the robot's body vector at ``features`` (option ``"proprio"``):
                required when the world model dreams the body, refused when it does not.

        Raises:
            ValueError: wrong shape, non-finite values, a demo index out of range, or a missing
                / refused / malformed ``proprio`` (the message names the body's fields).
        """
        f = self._check_features(features, "features")
        prev = None if previous is None else self._check_features(previous, "previous_features")
        r = len(self.reference)
        d = nearest_demo(f, self._ref_frame0) if demo is None else int(demo)
        if not 0 <= d < r:
            raise ValueError(f"options['demo'] must be in [0, {r}), got {d}")
        previous_t = None if prev is None else torch.from_numpy(prev).to(self.device)
        body = _body.option_body(proprio, self.body_fields, self.device)
        f_t = torch.from_numpy(f).to(self.device)
        return Start(f_t, d, 0, "features", -1, previous=previous_t, proprio=body)

    def _check_features(self, features: Any, name: str) -> np.ndarray:
        f = np.asarray(features, dtype=np.float32)
        if f.shape != (self.num_tokens, self.feature_dim):
            raise ValueError(
                f"options[{name!r}] must have shape ({self.num_tokens}, {self.feature_dim}) "
                f"(one observation of this bundle's encoder), got {f.shape}"
            )
        if not np.all(np.isfinite(f)):
            raise ValueError(f"options[{name!r}] contains NaN or inf")
        return f
