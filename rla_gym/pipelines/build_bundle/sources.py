"""Steps 1-2 of a build: the dataset and world model, checked against each other, and which
episodes play which part (reference demos, reset starts, calibration)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rla_gym.errors import RLAGymError
from rla_gym.pipelines.build_bundle.config import BuildBundleConfig

if TYPE_CHECKING:
    from rla_gym.data.episodes import EpisodeStore, FeatureEpisode
    from rla_gym.world_model.baselines import Predictor

__all__ = ["EpisodeSelection", "open_sources", "select_episodes"]


# --------------------------------------------------------------------------- 1. sources
def open_sources(cfg: BuildBundleConfig) -> tuple[EpisodeStore, dict[str, Any], str, Predictor]:
    """Open the dataset and the world model and check that they belong together.

    Returns:
        ``(store, dataset manifest, encoder fingerprint, world model)``.

    Raises:
        RLAGymError: the dataset has no ``cfg.encoder`` features.
        EncoderMismatchError: the world model was trained on another encoder's features.
        ValueError: ``cfg.chunk`` beyond the model's horizon, or another action size.
    """
    from rla_gym.data.episodes import EpisodeStore
    from rla_gym.world_model import load_predictor

    store = EpisodeStore(cfg.data)
    ds = store.manifest()
    fp = store.feature_fingerprint(cfg.encoder)
    if fp is None:
        raise RLAGymError(
            f"no {cfg.encoder} features in {cfg.data}; run "
            f"`rla-gym encode --data {cfg.data} --encoder {cfg.encoder}`"
        )
    model = load_predictor(cfg.world_model, expected_fingerprint=fp)
    if cfg.chunk < 1 or cfg.chunk > int(model.max_horizon):
        raise ValueError(f"chunk={cfg.chunk} must be in [1, {model.max_horizon}] (model horizon)")
    if int(model.action_dim) != int(ds["action_dim"]):
        raise ValueError(
            f"world model takes {model.action_dim}-D actions, dataset has {ds['action_dim']}"
        )
    return store, ds, fp, model


# --------------------------------------------------------------------------- 2. episodes
@dataclass(frozen=True)
class EpisodeSelection:
    """Which episodes play which part in the bundle (ids of the dataset's ``EpisodeStore``).

    Attributes:
        features: every encoded episode, features kept in ``float16 (T+1, N, D)``.
        reference: reference demos: successful train episodes of the chosen policies.
        reset: episodes whose frame 0 is a reset start.
        calibration: every encoded episode that is not a reference demo.
        heldout: the held-out split (the training run's validation episodes).
        skipped: episodes not encoded yet (e.g. a collection still in progress).
    """

    features: dict[str, FeatureEpisode]
    reference: list[str]
    reset: list[str]
    calibration: list[str]
    heldout: frozenset[str]
    skipped: int


def select_episodes(
    store: EpisodeStore, fingerprint: str, cfg: BuildBundleConfig
) -> EpisodeSelection:
    """Load every encoded episode and give each its part (see :class:`EpisodeSelection`).

    Reference demos are the first ``cfg.num_reference_demos`` successful train episodes of
    ``cfg.policies``; reset starts are every episode of ``cfg.policies`` (``reset_from="all"``)
    or the reference demos; every other episode calibrates the success threshold.

    Raises:
        ValueError: no successful train episode of ``cfg.policies``.
    """
    _, val_ids = store.split(cfg.val_fraction, seed=cfg.seed)
    heldout = frozenset(val_ids)
    encoded = [e for e in store.episode_ids() if store.has_features(e, cfg.encoder)]
    own = [e for e in encoded if e.rsplit("_", 1)[0] in cfg.policies]
    feats = {}
    for e in encoded:
        fe = store.load_features(e, cfg.encoder, expected_fingerprint=fingerprint)
        fe.features = fe.features.astype(np.float16)  # on-disk precision; halves peak memory
        feats[e] = fe
    ref_ids = [e for e in own if e not in heldout and bool(feats[e].success[-1])]
    ref_ids = ref_ids[: cfg.num_reference_demos]
    if not ref_ids:
        raise ValueError(
            f"no successful {'/'.join(cfg.policies)} train episodes in {cfg.data} to use as "
            f"reference demos"
        )
    return EpisodeSelection(
        features=feats,
        reference=ref_ids,
        reset=own if cfg.reset_from == "all" else ref_ids,
        calibration=[e for e in encoded if e not in ref_ids],
        heldout=heldout,
        skipped=len(store.episode_ids()) - len(encoded),
    )
