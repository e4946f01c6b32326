"""The robot's body as part of the dreamed state: one documented proprio vector per simulator.

Every recorded episode holds the simulator's raw ``proprio`` (``float32 (T+1, P_raw)``, written by
:mod:`rla_gym.data.collect`). The world model, the policies and the rewards read the **body
vector** made from it here, which is continuous where the raw one is not:

* ``dmc`` (reacher): raw ``[q_shoulder, q_wrist, v_shoulder, v_wrist]`` (joint angles wrap at
  ``±pi``) -> ``[sin, cos]`` of each angle + the two joint velocities (``P = 6``);
* ``robosuite`` / ``libero`` (Panda, OSC): raw ``[eef_pos (3), eef_quat (4, x y z w), gripper
  joint positions (2)]`` -> end-effector position, its orientation as the first two columns of
  the rotation matrix (the continuous "6-D rotation"; a quaternion's sign flips are not) and the
  gripper joints (``P = 11``).

:func:`effector_position` reads where the robot's effector is off a body vector: reacher's
fingertip by forward kinematics of the joint angles, a Panda's end-effector position as recorded.

The normalisation (mean / std of the body vector and of its change) lives with the model that
uses it (stored in its checkpoint, hence in the bundle), not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rla_gym.sims.kinematics import REACHER_LINKS, two_link_ik, wrap_angle

__all__ = [
    "BODY_SPECS",
    "FEATURES",
    "PROPRIO",
    "BodySpec",
    "angle_pairs",
    "body_spec",
    "body_vector",
    "check_body",
    "effector_joint_error",
    "effector_position",
    "joint_angles",
    "places_reachable",
]

FEATURES, PROPRIO = "features", "proprio"
"""Keys of an observation that shows the body beside the features (an env's
``"features+proprio"`` mode, a body policy's input): ``(N, D)`` patch features, ``(P,)`` body."""


@dataclass(frozen=True)
class BodySpec:
    """What the body vector of one simulator holds.

    Attributes:
        sim: simulator name as in ``dataset.json`` (``"dmc"``, ``"robosuite"``, ``"libero"``).
        raw_fields: names of the recorded raw proprio, in order (``P_raw`` of them).
        fields: names of the body vector's entries, in order (``P`` of them).
    """

    sim: str
    raw_fields: tuple[str, ...]
    fields: tuple[str, ...]

    @property
    def dim(self) -> int:
        """``P``: size of the body vector."""
        return len(self.fields)

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form (``dataset.json``, bundle manifests)."""
        return {"sim": self.sim, "fields": list(self.fields), "dim": self.dim}


_PANDA_RAW = (
    "eef_x", "eef_y", "eef_z", "eef_qx", "eef_qy", "eef_qz", "eef_qw", "finger_l", "finger_r",
)  # fmt: skip
_PANDA = (
    "eef_x", "eef_y", "eef_z",
    "rot_xx", "rot_yx", "rot_zx", "rot_xy", "rot_yy", "rot_zy",
    "finger_l", "finger_r",
)  # fmt: skip

BODY_SPECS: dict[str, BodySpec] = {
    "dmc": BodySpec(
        "dmc",
        ("shoulder", "wrist", "shoulder_vel", "wrist_vel"),
        ("shoulder_sin", "shoulder_cos", "wrist_sin", "wrist_cos", "shoulder_vel", "wrist_vel"),
    ),
    "robosuite": BodySpec("robosuite", _PANDA_RAW, _PANDA),
    "libero": BodySpec("libero", _PANDA_RAW, _PANDA),
}
"""The body vector of every simulator rla-gym drives."""


def body_spec(sim: str) -> BodySpec:
    """The :class:`BodySpec` of ``sim`` (``dataset.json``'s ``"sim"``).

    Raises:
        ValueError: a simulator without a documented body vector.
    """
    if sim not in BODY_SPECS:
        raise ValueError(f"no body vector is defined for sim {sim!r}; known: {sorted(BODY_SPECS)}")
    return BODY_SPECS[sim]


def _rotation_6d(quat_xyzw: np.ndarray) -> np.ndarray:
    """``(..., 4)`` unit quaternions (x, y, z, w) -> ``(..., 6)`` first two rotation columns."""
    q = quat_xyzw / np.linalg.norm(quat_xyzw, axis=-1, keepdims=True).clip(1e-8)
    x, y, z, w = (q[..., i] for i in range(4))
    col0 = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y + z * w), 2 * (x * z - y * w)], -1)
    col1 = np.stack([2 * (x * y - z * w), 1 - 2 * (x * x + z * z), 2 * (y * z + x * w)], -1)
    return np.concatenate([col0, col1], -1)


def body_vector(sim: str, raw: np.ndarray) -> np.ndarray:
    """The body vector of recorded raw proprio.

    Args:
        sim: simulator name (see :data:`BODY_SPECS`).
        raw: ``(..., P_raw)`` raw proprio as the simulator adapter records it.

    Returns:
        ``float32 (..., P)``.

    Raises:
        ValueError: unknown simulator, wrong ``P_raw`` or non-finite values.
    """
    spec = body_spec(sim)
    raw = np.asarray(raw, dtype=np.float64)
    if raw.shape[-1:] != (len(spec.raw_fields),):
        raise ValueError(
            f"{sim} proprio must have {len(spec.raw_fields)} entries {spec.raw_fields}, "
            f"got shape {raw.shape}"
        )
    if not np.isfinite(raw).all():
        raise ValueError(f"{sim} proprio contains NaN or inf")
    if sim == "dmc":
        q, v = raw[..., :2], raw[..., 2:]
        out = np.concatenate([np.sin(q[..., :1]), np.cos(q[..., :1]), np.sin(q[..., 1:]),
                              np.cos(q[..., 1:]), v], -1)  # fmt: skip
    else:
        out = np.concatenate([raw[..., :3], _rotation_6d(raw[..., 3:7]), raw[..., 7:9]], -1)
    return out.astype(np.float32)


def angle_pairs(fields: Sequence[str]) -> list[tuple[str, int, int]]:
    """The joint angles a body vector carries as sine / cosine pairs: ``(joint, i_sin, i_cos)``
    for every ``<joint>_sin`` whose ``<joint>_cos`` is also in ``fields``, in field order.

    A body vector holds an angle as its sine and cosine so that it is continuous across
    ``±pi``; a controller wants the angle itself (a joint-space error is what a PD loop reads,
    and is awkward to compute from the pairs inside a small network).
    """
    fields = tuple(fields)
    pairs = []
    for i, name in enumerate(fields):
        if name.endswith("_sin") and f"{name[:-4]}_cos" in fields:
            pairs.append((name[:-4], i, fields.index(f"{name[:-4]}_cos")))
    return pairs


def effector_position(fields: Sequence[str], body: Any) -> Any:
    """Where the robot's effector is, read off body vectors ``(..., P)`` whose entries are
    ``fields``: reacher's fingertip ``(..., 2)`` (x, y in metres, by forward kinematics of the
    shoulder and wrist angles' sin / cos), a Panda's end effector ``(..., 3)`` (``eef_x/y/z``).
    A task's goal is a place for the effector (reacher: the target sphere), where the joint
    angles that reach it are not unique (the elbow can bend either way). Works on numpy arrays
    and torch tensors alike.

    Raises:
        ValueError: ``fields`` of no body whose effector is known.
    """
    fields = tuple(fields)

    def col(name: str) -> Any:
        return body[..., fields.index(name)]

    if isinstance(body, np.ndarray):
        stack: Any = np.stack
    else:
        import torch

        stack = torch.stack
    angles = ("shoulder_sin", "shoulder_cos", "wrist_sin", "wrist_cos")
    if set(angles) <= set(fields):
        s1, c1, s2, c2 = (col(f) for f in angles)
        upper, lower = REACHER_LINKS
        # cos / sin of the summed angle: the hand's direction in the base frame.
        c12, s12 = c1 * c2 - s1 * s2, s1 * c2 + c1 * s2
        return stack([upper * c1 + lower * c12, upper * s1 + lower * s12], -1)
    if {"eef_x", "eef_y", "eef_z"} <= set(fields):
        return stack([col("eef_x"), col("eef_y"), col("eef_z")], -1)
    raise ValueError(
        f"no effector is known for a body with fields {fields}; known: reacher's joint angles "
        "(shoulder_sin ... wrist_cos) and a Panda's eef_x, eef_y, eef_z"
    )


def places_reachable(fields: Sequence[str]) -> bool:
    """Whether :func:`effector_joint_error` knows the joint angles that put this body's effector
    at a place (reacher's shoulder and wrist, carried as sine / cosine pairs)."""
    return [name for name, _, _ in angle_pairs(fields)] == ["shoulder", "wrist"]


def effector_joint_error(fields: Sequence[str], body: Any, place: Any) -> Any:
    """Each joint's wrapped angle error ``(..., J)`` (radians in ``[-pi, pi)``) from body vectors
    ``(..., P)`` to the joint angles that put the effector at ``place`` (the coordinates
    :func:`effector_position` gives), of the ways to get there the nearest. A goal read off the
    scene as a place becomes the angle errors a PD loop acts on. Reacher only (``J = 2``: the
    elbow's two branches, the nearer taken); numpy arrays and torch tensors alike.

    Raises:
        ValueError: a body whose joints' inverse kinematics is not known.
    """
    fields = tuple(fields)
    if not places_reachable(fields):
        raise ValueError(
            f"the joint angles reaching a place are known for reacher's shoulder and wrist "
            f"(shoulder_sin ... wrist_cos), not for a body with fields {fields}"
        )
    q = joint_angles(fields, body)
    return wrap_angle(two_link_ik(place, q, REACHER_LINKS) - q)


def joint_angles(fields: Sequence[str], x: Any) -> Any:
    """The angles ``(..., J)`` (radians) of the joints that vectors ``(..., F)`` with entries
    ``fields`` carry as sine / cosine pairs (:func:`angle_pairs`, in their order); numpy arrays
    and torch tensors alike. The pairs must be unstandardised: a standardised sine and cosine do
    not make an angle."""
    pairs = angle_pairs(fields)
    if isinstance(x, np.ndarray):
        return np.stack([np.arctan2(x[..., i], x[..., j]) for _, i, j in pairs], -1)
    import torch

    return torch.stack([torch.atan2(x[..., i], x[..., j]) for _, i, j in pairs], -1)


def check_body(proprio: np.ndarray, fields: tuple[str, ...], what: str = "proprio") -> np.ndarray:
    """Validate a batch of body vectors; returns ``float32 (..., P)``.

    Raises:
        ValueError: wrong last dimension or non-finite values, naming the expected fields.
    """
    p = np.asarray(proprio, dtype=np.float32)
    if p.ndim < 1 or p.shape[-1] != len(fields):
        raise ValueError(
            f"{what} must have {len(fields)} entries per row ({', '.join(fields)}), "
            f"got shape {p.shape}"
        )
    if not np.isfinite(p).all():
        raise ValueError(f"{what} contains NaN or inf; expected finite ({', '.join(fields)})")
    return p
