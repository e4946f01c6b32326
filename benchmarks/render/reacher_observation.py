"""The reacher observation probe (`reacher_observation.py`)."""

from __future__ import annotations

from .common import load_result, stamp


def reacher_observation() -> str:
    d = load_result("reacher_observation.json")
    if d is None:
        return "_not run yet: `python benchmarks/reacher_observation.py`_"

    def r2(cell: dict) -> str:
        return f"{cell['r2_mean']:+.2f}"

    def pose_cell(cell: dict) -> str:
        # Per target, in pairs: shoulder sin, cos; wrist sin, cos; finger x, y.
        v = dict(zip(cell["targets"], cell["r2"], strict=True))
        return " / ".join(
            f"{v[a]:+.2f} {v[b]:+.2f}"
            for a, b in (("sin_shoulder", "cos_shoulder"), ("sin_wrist", "cos_wrist"),
                         ("finger_x", "finger_y"))
        )  # fmt: skip

    kinds = [k for k in ("mean_patch", "flat_patches", "pixels") if k in d["variants"][0]]
    label = {"mean_patch": "pooled", "flat_patches": "patches", "pixels": "pixels"}
    pose = [k for k in ("flat_patches", "pixels") if "pose" in d["variants"][0].get(k, {})]
    out = [
        "| observation | finger move per chunk / arm width (px) | "
        + " | ".join(f"torque, {label[k]}: pair / history" for k in kinds)
        + "".join(f" | pose, {label[k]}" for k in pose)
        + " |",
        "|---|---|" + "---|" * (len(kinds) + len(pose)),
    ]
    for v in d["variants"]:
        out.append(
            f"| fovy {v['fovy']:g}°, {v['resolution']} px | {v['finger_move_px_median']:.1f} / "
            f"{v['arm_width_px']:.1f} | "
            + " | ".join(f"{r2(v[k]['pair'])} / {r2(v[k]['history'])}" for k in kinds)
            + "".join(f" | {pose_cell(v[k]['pose'])}" for k in pose)
            + " |"
        )
    for name, what in (("qpos_qvel", "true joint angles + velocities"),
                       ("qpos", "true joint angles")):  # fmt: skip
        c = d["ceiling"][name]
        out.append(f"| ceiling: {what} | - | {r2(c['pair'])} / {r2(c['history'])} |"
                   + " - |" * (len(kinds) - 1 + len(pose)))  # fmt: skip
    extra = (
        f"Mean held-out R² of a linear inverse-dynamics probe (ridge on PCA-{d['pca_dim']} of each "
        f"frame's features; pair = [s_t, s_t+K], history = [s_t−K, s_t, s_t+K] → the chunk's "
        f"mean torque), {d['policies']['noisy']} noisy-expert + {d['policies']['random']} "
        f"random-torque reacher episodes of {d['steps_per_episode']} steps, "
        f"{d['test_episodes']} held out by episode; the same trajectories in every variant."
    )
    if "pixels" in kinds:
        extra += (
            " Pixels: the same probes on the raw RGB frames, a control (they hold the pose "
            "exactly). Pose: held-out R² of ridge from one frame's PCA inputs to the arm's pose, "
            "as sin cos of the shoulder angle / sin cos of the wrist angle / the finger's x y."
        )
    return "\n".join([*out, "", extra + " " + stamp(d)])
