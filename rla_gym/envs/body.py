"""The robot's body in a dreamed env: observation modes, start bodies, the progress head's input.

A bundle whose world model has ``proprio_fields`` dreams a *body vector*
(:mod:`rla_gym.data.proprio`: reacher's joint angles and velocities, the Panda's end-effector pose
and fingers) beside the patch features. Each env then carries one ``(P,)`` vector: a start takes
it from the bundle's bank (the body of the very frame it starts from) or from
``options["proprio"]``, and every step the world model returns the next one with the next
features. ``obs_mode="features+proprio"`` shows both as a Gymnasium ``Dict`` (the robosuite /
LIBERO observation-dict convention); the default ``"auto"`` picks it for such bundles. These are
the rules :class:`~rla_gym.envs.core.DreamCore` follows; they live here so the core stays one
file about stepping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces

from rla_gym.data.proprio import FEATURES, PROPRIO, check_body
from rla_gym.envs.config import ObsMode

__all__ = [
    "FEATURES",
    "PROPRIO",
    "ResolvedObsMode",
    "head_reads_body",
    "observation_space",
    "observe",
    "option_body",
    "resolve_obs_mode",
    "space_reads_body",
]

ResolvedObsMode = Literal["patch", "dict", "features+proprio"]


def resolve_obs_mode(
    obs_mode: ObsMode, body_fields: tuple[str, ...], bundle: str | Path
) -> ResolvedObsMode:
    """The observation a dreamed env returns: ``"auto"`` is ``"features+proprio"`` when the world
    model dreams the body, else ``"patch"``.

    Raises:
        ValueError: ``"features+proprio"`` with a world model that dreams features only.
    """
    if obs_mode == "auto":
        return "features+proprio" if body_fields else "patch"
    if obs_mode == "features+proprio" and not body_fields:
        raise ValueError(
            f"obs_mode='features+proprio' but the world model of {bundle} dreams features only "
            "(no proprio_fields); use obs_mode='patch' (or 'auto'), or a bundle whose world "
            "model dreams the body (train-wm --proprio, then build-bundle)"
        )
    return obs_mode


def observation_space(
    obs_mode: ResolvedObsMode, num_tokens: int, feature_dim: int, body_dim: int
) -> spaces.Space:
    """One env's observation space for a resolved ``obs_mode``."""
    patch = spaces.Box(-np.inf, np.inf, (num_tokens, feature_dim), np.float32)
    if obs_mode == "patch":
        return patch
    if obs_mode == "dict":
        pooled = spaces.Box(-np.inf, np.inf, (feature_dim,), np.float32)
        return spaces.Dict({"patch": patch, "pooled": pooled})
    if obs_mode == "features+proprio":
        body = spaces.Box(-np.inf, np.inf, (body_dim,), np.float32)
        return spaces.Dict({FEATURES: patch, PROPRIO: body})
    raise ValueError(f"obs_mode must be 'patch', 'dict' or 'features+proprio', got {obs_mode!r}")


def space_reads_body(space: spaces.Space, who: str) -> bool:
    """Whether a policy of observation ``space`` reads the robot's body: ``Box`` features do
    not, a ``Dict`` with the ``"features+proprio"`` keys (:data:`FEATURES`, :data:`PROPRIO`) does.

    Args:
        space: the policy's observation space.
        who: names the policy in the error message.

    Raises:
        ValueError: a ``Dict`` with other keys, or a space that is neither.
    """
    if isinstance(space, spaces.Box):
        return False
    if isinstance(space, spaces.Dict) and set(space.spaces) == {FEATURES, PROPRIO}:
        return True
    keys = sorted(space.spaces) if isinstance(space, spaces.Dict) else type(space).__name__
    raise ValueError(
        f"{who} reads Box (N, D) features or a Dict with keys '{FEATURES}' (N, D) and "
        f"'{PROPRIO}' (P,), got {keys}"
    )


def observe(
    s: torch.Tensor, obs_mode: ResolvedObsMode, body: torch.Tensor | None = None
) -> np.ndarray | dict[str, np.ndarray]:
    """``(B, N, D)`` features (and ``(B, P)`` bodies) -> batched observation(s), numpy float32.

    Raises:
        ValueError: ``"features+proprio"`` without a body.
    """
    patch = s.float().cpu().numpy()
    if obs_mode == "dict":
        return {"patch": patch, "pooled": patch.mean(1)}
    if obs_mode == "features+proprio":
        if body is None:
            raise ValueError("obs_mode='features+proprio' needs the body (B, P) of every env")
        return {FEATURES: patch, PROPRIO: body.float().cpu().numpy()}
    return patch


def option_body(proprio: Any, fields: tuple[str, ...], device: torch.device) -> torch.Tensor | None:
    """The start body of ``start="features"`` from ``options["proprio"]``.

    Args:
        proprio: ``(P,)`` body vector in ``fields`` order, or ``None``.
        fields: the world model's ``proprio_fields`` (empty: it dreams features only).
        device: where the env's state lives.

    Returns:
        ``float32 (P,)`` on ``device``, or ``None`` for a features-only world model.

    Raises:
        ValueError: a body model without ``options["proprio"]``, a features-only model given
            one, a wrong size or non-finite values; the message names the fields.
    """
    if not fields:
        if proprio is not None:
            raise ValueError(
                "options['proprio'] was given but this bundle's world model dreams features "
                "only (no proprio_fields); drop it, or use a bundle that dreams the body"
            )
        return None
    names = ", ".join(fields)
    if proprio is None:
        raise ValueError(
            f"start='features' on a bundle that dreams the robot's body needs "
            f"options['proprio'], its ({len(fields)},) body vector ({names}); "
            "rla_gym.data.proprio.body_vector(sim, raw_proprio) makes it from a simulator's"
        )
    p = check_body(proprio, fields, "options['proprio']")
    if p.shape != (len(fields),):
        raise ValueError(
            f"options['proprio'] must have shape ({len(fields)},) ({names}), got {p.shape}"
        )
    return torch.from_numpy(p).to(device)


def head_reads_body(head: Any, body_fields: tuple[str, ...], bundle: str | Path) -> bool:
    """Whether the progress head reads the body too, checked against the dreamed body.

    A head names what it reads in ``proprio_fields`` (on the module or its config); a head
    without them reads features only and must be called without a body.

    Raises:
        ValueError: the head reads a body the world model does not dream (features-only model,
            or other fields).
    """
    if head is None:
        return False
    fields = getattr(head, "proprio_fields", None)
    if fields is None:
        fields = getattr(getattr(head, "config", None), "proprio_fields", ())
    fields = tuple(fields)
    if not fields:
        return False
    if fields != tuple(body_fields):
        dreamed = f"a body of ({', '.join(body_fields)})" if body_fields else "features only"
        raise ValueError(
            f"the progress head of {bundle} reads the robot's body ({', '.join(fields)}) but the "
            f"world model dreams {dreamed}; dream with the bundle's own world model, or add a "
            "head trained without proprio"
        )
    return True
