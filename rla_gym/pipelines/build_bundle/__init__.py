"""Build an artifacts bundle: a real dataset + a trained world model -> a dreamed env's folder.

The build trains nothing. It reads cached features, chooses and stores what the env needs and
calibrates the success estimate, one named step each:

=============================  ===================================================================
step                           what it does
=============================  ===================================================================
:func:`open_sources`           dataset, encoder fingerprint and world model, checked against each
                               other
:func:`select_episodes`        reference demos, reset starts and calibration episodes (with the
                               training run's train / held-out split)
:func:`feature_banks`          reference rows every ``K`` frames and reset frames, quantised (the
                               error is measured), each start aligned with a reference demo
:func:`calibrate_real`         success threshold on real final frames; reward calibration
:func:`render_bank`            thumbnails of real frames for nearest-neighbour rendering
:func:`store_weights`          world-model weights in the bundle's dtype (prediction change
                               measured)
:func:`calibrate_dreamed`      success threshold on dreamed replays of the calibration episodes
                               (each scored by its :func:`closest_approach` to the goal)
:func:`copy_policy`            optional behaviour-cloned base policy, checked against the spaces
:func:`make_manifest`          everything above, with checksums, sizes and versions
=============================  ===================================================================

:func:`build_bundle` runs them into a temporary folder that replaces ``cfg.out`` atomically. The
format itself (file names, bank tensors, int8 quantisation, loading) is
:mod:`rla_gym.envs.artifacts`.

Modules, in the order a build runs them: ``config`` (:class:`BuildBundleConfig`), ``sources``
(steps 1-2), ``banks`` (3, 5 and the bank file), ``calibration`` (4), ``weights`` (6-7),
``manifest`` (8), ``build`` (:func:`build_bundle`); ``parts`` adds a progress head or a frame
decoder to a built bundle (:func:`add_progress_head`, :func:`add_decoder`).

Example:
    ``rla-gym build-bundle --data data/libero_object_0 --world-model runs/wm/checkpoint
    --policy runs/bc --weights-dtype int8 --out /tmp/bundle``
"""

from rla_gym.pipelines.build_bundle.banks import FeatureBanks, feature_banks, render_bank
from rla_gym.pipelines.build_bundle.build import build_bundle
from rla_gym.pipelines.build_bundle.calibration import (
    RealCalibration,
    balanced_accuracy,
    calibrate_dreamed,
    calibrate_real,
    calibrate_threshold,
    closest_approach,
)
from rla_gym.pipelines.build_bundle.config import BuildBundleConfig
from rla_gym.pipelines.build_bundle.manifest import make_manifest
from rla_gym.pipelines.build_bundle.parts import (
    add_body_model,
    add_decoder,
    add_part,
    add_progress_head,
)
from rla_gym.pipelines.build_bundle.sources import EpisodeSelection, open_sources, select_episodes
from rla_gym.pipelines.build_bundle.weights import copy_policy, store_weights

__all__ = [
    "BuildBundleConfig",
    "EpisodeSelection",
    "FeatureBanks",
    "RealCalibration",
    "add_body_model",
    "add_decoder",
    "add_part",
    "add_progress_head",
    "balanced_accuracy",
    "build_bundle",
    "calibrate_dreamed",
    "calibrate_real",
    "calibrate_threshold",
    "closest_approach",
    "copy_policy",
    "feature_banks",
    "make_manifest",
    "open_sources",
    "render_bank",
    "select_episodes",
    "store_weights",
]
