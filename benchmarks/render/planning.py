"""The planner in reality (`rla-gym eval` runs, `planner_oracle.py`)."""

from __future__ import annotations

import json
from pathlib import Path

from rla_gym.utils.provenance import bundle_rows

from .common import (
    RESULTS,
    fmt_wilson,
    load_result,
    planner_search,
    reward_mode_label,
    stamp,
)


def planner_real() -> str:
    folder = RESULTS / "planner_eval"
    runs = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    if not runs:
        return "_not run yet: `bash benchmarks/results/planner_eval/run_reacher.sh`_"
    names = {
        "random": "random",
        "bc": "bundle BC",
        "plan": "planner from scratch",
        "plan_res": "planner around BC (residual 0.2)",
    }
    out = [
        "| suite | policy | real successes | Wilson 95 % | seconds per decision |",
        "|---|---|---|---|---|",
    ]
    for key, d in runs.items():
        suite, _, kind = key.partition("_")
        lo, hi = d["wilson95"]
        dec = d.get("mean_decision_s")
        out.append(
            f"| {suite} | {names.get(kind, kind)} | {d['successes']}/{d['episodes']} | "
            f"[{lo:.2f}, {hi:.2f}] | {'-' if dec is None else format(dec, '.2f')} |"
        )
    return "\n".join(
        [
            *out,
            "",
            "`rla-gym eval` runs (commands in "
            "`benchmarks/results/planner_eval/run_*.sh`): reacher seeds 0-9, 64 control "
            "steps; Lift seeds 0-9, 200 steps; planner defaults (CEM, 64 samples, 3 "
            "iterations, 2 chunks, 5 flow steps), one core shared with other jobs.",
        ]
    )


def planner_oracle() -> str:
    d = load_result("planner_oracle.json")
    if d is None or not d.get("arms"):
        return "_not run yet: `python benchmarks/planner_oracle.py`_"
    # The dream rows of rl_in_dream_reacher run on the same bundle, current or superseded.
    shipped = load_result("rl_in_dream_reacher.json") or {}
    dream = bundle_rows(shipped, d["bundle_created_utc"], "arms")
    n = min(r["episodes"] for r in d["arms"].values())  # every row also on these seeds
    out = [
        "| model the planner searches in | reward it maximises | search | real success "
        f"(Wilson 95 %) | on the first {n} seeds | s / decision |",
        "|---|---|---|---|---|---|",
    ]

    def search(r: dict) -> str:
        if "planner" not in r:
            return "none: the base (BC + RLA head) alone"
        return planner_search(r["planner"])

    rows = [("real simulator (oracle)", r["scorer"], r) for r in d["arms"].values()]
    for k, r in dream.items():
        kind = k.split(" ")[0]  # the dreams' rows of rl_in_dream_reacher, for comparison
        if kind == "planner":
            rows.append(("the bundle's dream", reward_mode_label(r), r))  # a copy's: same dream
        elif kind == "planner-wm":
            model = f"the dream of `{Path(r['world_model']).parent.name}`"
            rows.append((model, reward_mode_label(r), r))
    rows.sort(key=lambda x: (x[2]["planner"]["residual_scale"], x[0]))
    if "bc" in dream:
        rows.append(("-", "-", dream["bc"]))
    for model, reward, r in rows:
        out.append(
            f"| {model} | {reward} | {search(r)} | "
            f"{fmt_wilson(r['success'], r['episodes'], *r['wilson95'])} | "
            f"{sum(r['per_episode_success'][:n])}/{n} | {r['mean_decision_s']:.2f} |"
        )
    a = d["eval_seeds"][0]
    p = next(iter(d["arms"].values()))["planner"]
    extra = (
        f"{d['task']}, real seeds from {a} (the episodes of `rl_in_dream_reacher.py`), "
        f"{d['horizon_chunks']} chunks of {d['chunk']} control steps; the same planner "
        f"everywhere (CEM, {p['samples']} samples, {p['iterations']} iterations, horizon "
        f"{p['horizon']} chunks unless the row says otherwise, MPC with warm starts). "
        "`privileged`: 1 if the finger touched the target during the chunk, minus the "
        "finger-to-target distance at its end (simulator state); the other rewards are the "
        "bundle's, on the encoded frames at chunk ends. "
        f"Bundle built {d['bundle_created_utc'][:10]}."
    )
    return "\n".join([*out, "", extra + " " + stamp(d)])
