"""What the dream's reward and success estimate measure.

From `success_estimate.py`, `reward_samples.py` and `reward_ranking.py`.
"""

from __future__ import annotations

from .common import fmt_opt, load_result, stamp


def success_estimate() -> str:
    d = load_result("success_estimate.json")
    suites = [k for k in ("libero", "robosuite-lift", "dmc-reacher") if d and k in d]
    if not suites:
        return "_not run yet: `python benchmarks/success_estimate.py`_"
    out = [
        "| suite | progress head AUC | start false positives | goal-distance rule AUC | "
        "its start false positives | held-out episodes (frames, solved) |",
        "|---|---|---|---|---|---|",
    ]
    for s in suites:
        r, g = d[s], d[s]["goal_distance"]
        gfp = (
            "-"
            if g["start_false_positive_rate"] is None
            else f"{g['start_false_positive_rate']:.2f}"
        )
        out.append(
            f"| {s} | {r['auc']:.3f} | {r['start_false_positive_rate']:.2f} | "
            f"{g['auc']:.3f} | {gfp} | {r['heldout_episodes']} ({r['frames']}, "
            f"{r['success_frames']}) |"
        )
    return "\n".join(
        [*out, "", "Targets: AUC ≥ 0.9, ≤ 10 % false positives at start states. " + stamp(d)]
    )


def reward_samples() -> str:
    d = load_result("reward_samples.json")
    suites = [k for k in ("libero", "robosuite-lift", "dmc-reacher") if d and k in d]
    if not suites:
        return "_not run yet: `python benchmarks/reward_samples.py`_"
    modes = list(d[suites[0]]["modes"])
    head = " | ".join(f"{m}: noise std (× R=1) | {m}: noise / signal" for m in modes)
    out = [
        f"| suite | R | {head} | ms / step, 1 env | ms / env step, batched |",
        "|---|---|" + "---|---|" * len(modes) + "---|---|",
    ]
    for s in suites:
        by_mode = d[s]["modes"]
        for i, row in enumerate(by_mode[modes[0]]):
            cells = []
            for m in modes:
                r = by_mode[m][i]
                cells += [
                    f"{r['noise_std']:.2g} ({fmt_opt(r['noise_vs_r1'], '.2f')})",
                    fmt_opt(r["noise_to_signal"], ".2f"),
                ]
            out.append(
                f"| {s} | {row['reward_samples']} | {' | '.join(cells)} | "
                f"{row['ms_per_step_single']:.1f} | {row['ms_per_env_step_batched']:.2f} |"
            )
    p = d["provenance"]
    n = p["num_starts"] * p["num_seeds"]
    extra = (
        f"One dreamed step from {p['num_starts']} reset-bank starts with the bundle's BC chunk, "
        f"{p['num_seeds']} noise seeds each ({p['flow_steps']} Euler steps). Noise: reward std "
        f"over seeds, averaged over starts (independent samples: 1/√R of R=1); signal: std over "
        f"starts of the seed-mean reward. The state follows sample 0 whatever R, so only the "
        f"reward changes. Batched: {n} envs in one call. "
    )
    return "\n".join([*out, "", extra + stamp(d)])


def reward_ranking() -> str:
    d = load_result("reward_ranking.json")
    if d is None or not d.get("suites"):
        return "_not run yet: `python benchmarks/reward_ranking.py`_"
    what = {
        "bundle": "the bundle's",
        "distance-supervised": "distance-supervised head (the true distance as its label)",
        "distance-supervised+body": "distance-supervised head that also reads the body",
        "body": "a head that also reads the body (`train-progress --proprio`)",
        "goal": "the goal-body head: the body's distance to the goal body read off the scene",
        "effector": "the effector-goal head: the fingertip's distance to the place read off the "
        "scene (`--goal-space effector`)",
    }
    out = [
        "| suite | reward | head | Spearman with the task's order (± s.e.) | states |",
        "|---|---|---|---|---|",
    ]
    notes = []
    for suite, e in d["suites"].items():
        for key, r in e["rows"].items():
            name, mode = key.rsplit(" ", 1)
            h = e.get("heads", {}).get(name, {})
            target = h.get("target", "fraction")
            if target == "steps":
                target = f"steps, decay {h.get('decay_steps', 16):g}"
            if mode != "progress":
                head = "-"
            elif name.startswith("distance-supervised"):  # its label is the distance
                head = what.get(name, f"`{name}` (the true distance as its label)")
            else:
                head = what.get(name, f"`{name}`") + f" (target: {target})"
            out.append(
                f"| {suite} | {mode} | {head} | {r['spearman']:+.2f} ± {r['se']:.2f} | "
                f"{r['states']} |"
            )
        per = e["candidates"] // (len(e["noise"]) + 1)
        notes.append(
            f"{suite} ({e['task']}): {e['candidates']} chunks per real state (the base's chunk "
            f"plus noise {', '.join(f'{x:g}' for x in e['noise'])}, {per} each, and "
            f"{e['candidates'] - per * len(e['noise'])} uniform random ones), states every "
            f"{e.get('every', 1)} decision(s) of the base; {e['wall_minutes']:.1f} min."
        )
        if dh := e.get("distance_head"):
            notes.append(
                f"The distance-supervised head ({dh['steps']} steps on {dh['train_episodes']} "
                f"episodes of `{dh['data']}`, {dh['train_minutes']:.1f} min) reads held-out "
                f"frames' distances with a Spearman of {dh['heldout_spearman_vs_distance']:.2f} "
                "across frames"
                + (
                    f"; with the body, {b['heldout_spearman_vs_distance']:.2f}."
                    if (b := dh.get("body"))
                    else "."
                )
            )
    notes.append(
        "The task's order (simulator state): reacher, touching the target during the chunk, "
        "then the finger-to-target distance at its end; Lift, solving during the chunk, then the "
        "cube's rise, then the gripper-to-cube distance."
    )
    return "\n".join([*out, "", " ".join(notes) + " " + stamp(d)])


def reward_signal() -> str:
    d = load_result("reward_signal.json")
    if d is None or not d.get("suites"):
        return "_not run yet: `python benchmarks/reward_signal.py`_"
    out = [
        "| suite | reward | base's return | noise std | effect of a change | consistency across "
        "noise | best change: gain where chosen | gain under fresh noise | success estimate: "
        "where chosen / fresh noise |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for suite, e in d["suites"].items():
        for mode, r in e["modes"].items():
            keep = r["best_gain_held_out"] / r["best_gain_in_sample"] if r[
                "best_gain_in_sample"] > 0 else float("nan")  # fmt: skip
            out.append(
                f"| {suite} | {mode} | {r['base_return']:.2f} | {r['noise_std']:.3f} | "
                f"{r['effect_mean_abs']:.3f} | {r['consistency']:+.2f} | "
                f"{r['best_gain_in_sample']:+.3f} | {r['best_gain_held_out']:+.3f} "
                f"({fmt_opt(keep, '.0%')}) | {r['success_gain_in_sample']:+.2f} / "
                f"{r['success_gain_held_out']:+.2f} |"
            )
    c = d["config"]
    first = next(iter(d["suites"].values()))
    extra = (
        f"The base policy closed loop in the dream from {len(first['starts'])} bank starts per "
        f"suite, alone and with each of {c['directions']} random sign vectors × {c['scale']:g} "
        f"added to every chunk (the main job's residual bound), under two flow-noise seeds per "
        f"start ({c['flow_steps']} Euler steps, the bundle's horizon); one set of dreamed "
        "trajectories scored in every reward mode. Consistency: correlation of a change's "
        "effect on the return under one seed with its effect under the other. Best change: per "
        "start, the direction with the largest gain under one seed, judged under the other "
        "(both ways round); the share kept is in brackets. "
    )
    return "\n".join([*out, "", extra + stamp(d)])
