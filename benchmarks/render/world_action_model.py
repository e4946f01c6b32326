"""BC + RLA head against plain BC (`world_action_model.py`)."""

from __future__ import annotations

from .common import load_result, stamp


def world_action_model() -> str:
    d = load_result("world_action_model.json")
    if d is None:
        return "_not run yet: `python benchmarks/world_action_model.py`_"
    names = {"bc": "BC", "bc+rla": "BC + RLA head"}
    out = [
        "| suite | method | real success (pooled) | Wilson 95 % | per seed | held-out action MSE |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(d["summary"]["rows"], key=lambda r: (r["suite"], r["method"])):
        lo, hi = r["wilson95"]
        out.append(
            f"| {r['suite']} | {names.get(r['method'], r['method'])} | "
            f"{r['successes']}/{r['episodes']} ({100 * r['success_rate']:.0f} %) | "
            f"[{100 * lo:.0f}, {100 * hi:.0f}] % | {', '.join(r['per_seed'])} | "
            f"{r['heldout_action_mse']:.4f} ± {r['heldout_action_mse_std']:.4f} |"
        )
    p, s = d["protocol"], d["summary"]
    gains = ", ".join(f"{k} {v:+.1f}" for k, v in sorted(s["gain_points"].items()))
    mean = s["mean_gain_points"]
    e = next(iter(d["entries"].values()))
    extra = (
        f"BC + RLA head minus BC, success points: {gains or '-'}"
        + (
            ""
            if mean is None
            else f" (mean {mean:+.1f}; the paper reports +8.4 on five ManiSkill tasks)"
        )
        + f". {p['labelled']} labelled expert episodes per seed ({e['labelled_rows']} "
        f"rows at seed {e['seed']}), action-free videos = the other train-split "
        f"{' + '.join(p['videos'])} episodes ({e['video_episodes']} episodes in "
        f"{e['suite']}); {p['steps']} optimizer steps of batch {p['batch_size']} for both "
        f"methods, latent weight {p['latent_weight']}, chunks of {p['chunk']}; "
        f"{p['episodes']} real episodes per policy and seed; MSE over validation-split "
        f"expert episodes, mean ± std over seeds. "
    )
    return "\n".join([*out, "", extra + stamp(d)])
