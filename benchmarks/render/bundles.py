"""The embedded bundles' manifests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _real_cal(su: dict) -> str:
    r = su.get("real_frames")
    return (
        "-" if r is None else (f"{r['train_balanced_accuracy']:.2f} / {r['heldout_agreement']:.2f}")
    )


def _head(m: dict) -> str:
    p = m.get("progress")
    if not p or "val_metrics" not in p:
        return "none"
    v = p["val_metrics"]
    return (
        f"{v['val/success_auc']:.3f} / {v['val/start_false_positive_rate']:.2f} "
        f"({p.get('val_episodes', '?')} held-out ep.)"
    )


def _cost(record: dict) -> str:
    return f"{record['wall_clock_s'] / 60:.1f} min, {record['step']} steps"


def _wm_cost(record: dict, body: bool) -> str:
    """A warm-started world model costs its source's training plus its own (learning the body,
    or fine-tuning on more data)."""
    start = record.get("warm_start")
    if start is None:
        return _cost(record)
    return f"{_cost(start)} + {_cost(record)} {'with the body' if body else 'fine-tuned'}"


def bundles() -> str:
    assets = Path(__file__).parents[2] / "rla_gym" / "envs" / "assets"
    from rla_gym.envs import SUITE_IDS
    from rla_gym.envs.artifacts import dreamed_body_fields

    out = [
        "| id | real task | dreamed state | horizon (chunks) | size | WM val L1 (copy-last) | "
        "success estimate "
        "on dreamed replays (on real frames): train bal. acc. / held-out agreement | "
        "progress head (the env's success estimate): held-out AUC / start false positives | "
        "reset starts / reference demos | train-rla | "
        "train-wm | train-bc |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    errs, total = [], 0
    for suite, env_id in SUITE_IDS.items():
        path = assets / suite / "manifest.json"
        if not path.exists():
            continue
        m = json.loads(path.read_text())
        tr, su, w = m["training"], m["success"], m["weights"]
        total += m["total_bytes"]
        errs.append((w["prediction_rel_error"], w["sample_spread_rel"]))
        v = tr["world_model"]["val_metrics"]

        body = len(dreamed_body_fields(path.parent))  # the world model's, not the manifest's
        state = f"features + body ({body})" if body else "features"

        out.append(
            f"| `{env_id}` | {m['sim']} {m['task']} | {state} | {m['max_episode_steps']} | "
            f"{m['total_bytes'] / 1e6:.1f} MB | "
            f"{v['val/pred_l1']:.4f} ({v['val/copy_l1']:.4f}) | "
            f"{su['train_balanced_accuracy']:.2f} / {su['heldout_agreement']:.2f} "
            f"({_real_cal(su)}; {su['heldout_episodes']} held-out ep.) | {_head(m)} | "
            f"{len(m['reset']['episodes'])} / "
            f"{len(m['reference']['episodes'])} | {_cost(tr['rla'])} | "
            f"{_wm_cost(tr['world_model'], bool(body))} | "
            f"{tr['policy']['wall_clock_s'] / 60:.1f} min |"
        )
    e = np.array(errs)
    lo, hi = 100 * e.min(0), 100 * e.max(0)
    return "\n".join(
        [
            *out,
            "",
            f"{total / 1e6:.1f} MB in all. int8 weights move a one-chunk "
            f"prediction by {lo[0]:.0f}–{hi[0]:.0f} % of the chunk's feature change, "
            f"against {lo[1]:.0f}–{hi[1]:.0f} % between two flow samples of the "
            "float32 model. "
            "Training times were measured with other jobs sharing the two cores (one "
            "torch thread each).",
        ]
    )
