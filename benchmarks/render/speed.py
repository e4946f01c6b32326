"""Speed: real simulators, encoders and the dream.

From `sim_throughput.py`, `encoder_throughput.py` and `dream_speed.py`.
"""

from __future__ import annotations

from .common import load_result, stamp


def sim_throughput() -> str:
    d = load_result("sim_throughput.json")
    if d is None:
        return "_not run yet: `python benchmarks/sim_throughput.py`_"
    modes = ["physics", "render", "render+encode"]
    out = [
        "| simulator / task | physics only | + render 128 px | + render + encode |",
        "|---|---|---|---|",
    ]
    by: dict[str, dict[str, float]] = {}
    for r in d["rows"]:
        by.setdefault(f"{r['sim']} / {r['task']}", {})[r["mode"]] = r["steps_per_s"]
    for k, v in by.items():
        out.append(f"| {k} | " + " | ".join(f"{v.get(m, float('nan')):.1f}" for m in modes) + " |")
    return "\n".join([*out, "", "steps/s, one process, " + stamp(d)])


def encoder_throughput() -> str:
    d = load_result("encoder_throughput.json")
    if d is None:
        return "_not run yet: `python benchmarks/encoder_throughput.py`_"
    out = ["| encoder | px | dtype | batch | images/s |", "|---|---|---|---|---|"]
    for r in d["rows"]:
        out.append(
            f"| {r['encoder']} | {r['resolution']} | {r['dtype']} | {r['batch']} | "
            f"{r['images_per_s']:.1f} |"
        )
    return "\n".join([*out, "", stamp(d)])


def dream_speed(result: str = "dream_speed.json") -> str:
    """The table of ``result`` (``dream_speed_body.json``: a bundle that dreams the body)."""
    d = load_result(result)
    if d is None:
        return f"_not run yet: `python benchmarks/dream_speed.py` (→ {result})_"
    out = [
        "| setup | envs | env steps/s | control steps/s | × real LIBERO (control steps) |",
        "|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        x = r.get("speedup_vs_real_control_steps")
        out.append(
            f"| {r['kind']} | {r['num_envs']} | {r['env_steps_per_s']:.1f} | "
            f"{r['control_steps_per_s']:.1f} | {'-' if x is None else f'{x:.0f}×'} |"
        )
    m = d["machine"]
    return "\n".join(
        [
            *out,
            "",
            f"One env step = {d['chunk']} control steps; "
            f"{d['flow_steps']} Euler steps; torch threads {d['threads']}; "
            f"{m['cpu']}, {m['cores']} cores; git "
            f"`{d['git_sha'][:12]}`, {d['time_utc']}. {d['user_note']}.",
        ]
    )
