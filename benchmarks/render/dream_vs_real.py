"""Can the dream rank policies? (`dream_vs_real.py`)."""

from __future__ import annotations

from .common import fmt_rate, fmt_rho, fmt_rho_ci, load_result, stamp

DVR_SUITES = ("libero", "robosuite-lift", "dmc-reacher")


def dream_vs_real() -> str:
    runs = {s: d for s in DVR_SUITES if (d := load_result(f"dream_vs_real_{s}.json")) is not None}
    if not runs:
        return "_not run yet: `python benchmarks/dream_vs_real.py --suite <suite>`_"
    out: list[str] = []
    for suite, d in runs.items():
        modes = list(d["modes"])
        by = {m: {p["name"]: p for p in d["modes"][m]["policies"]} for m in modes}
        out += [
            f"**{suite}** ({d['sim']} {d['task']}; {len(d['starts'])} starts, "
            f"{d['horizon']} chunks of {d['chunk']} control steps; returns: imagined / real "
            f"features, same reward)",
            "",
            "| policy | real success | imagined success (estimate) | estimate on real "
            "frames | " + " | ".join(f"{m} return" for m in modes) + " |",
            "|---|---|---|---|" + "---|" * len(modes),
        ]
        for p in d["policies"]:
            n, re = p["name"], p["real"]
            cells = " | ".join(
                f"{by[m][n]['imagined']['mean_return']:.2f} / {by[m][n]['real']['mean_return']:.2f}"
                for m in modes
            )
            out.append(
                f"| {n} | {fmt_rate(re)} | {fmt_rate(p['imagined'])} | "
                f"{re['estimate_successes']}/{re['episodes']} | {cells} |"
            )
        out.append("")
    out += [
        "Spearman rank correlations (target: return ≥ 0.8 over policies, every suite):",
        "",
        "| suite | reward mode | return over policies (95 % CI) | scripted only (replayed) | "
        "closed-loop only | success over policies | imagined return vs real success | "
        "return over episodes | over policies within a start (mean) | return target "
        "≥ 0.8 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for suite, d in runs.items():
        for m, st in d["modes"].items():
            rho = st["spearman_return"]
            if rho is not None and rho >= 0.8:
                verdict = "met"
            else:
                verdict = f"missed by {0.8 - (rho or 0.0):.2f}"
            label = f"**{m}** (default)" if m == d["reward_mode"] else m
            out.append(
                f"| {suite} | {label} | {fmt_rho_ci(rho, st['spearman_return_ci95'])} | "
                f"{fmt_rho(st['spearman_return_scripted'])} | "
                f"{fmt_rho(st['spearman_return_closed_loop'])} | "
                f"{fmt_rho_ci(st['spearman_success'], st['spearman_success_ci95'])} | "
                f"{fmt_rho(st['spearman_return_vs_real_success'])} | "
                f"{fmt_rho(st['spearman_episode_return'])} | "
                f"{fmt_rho(st['spearman_return_within_start'])} | {verdict} |"
            )
    d0 = next(iter(runs.values()))
    times = "; ".join(
        f"{s} {len(d['policies']) * len(d['starts'])} real episodes of {d['real_episode_s']:.1f} s "
        f"({len(d['policies']) * len(d['starts']) * d['real_episode_s'] / 60:.0f} min)"
        for s, d in runs.items()
    )
    extra = (
        f"Default mode per suite: {d0['mode_rule']}. Real starts: LIBERO init states "
        f"0..n-1, seeds {d0['provenance']['seed']}+i elsewhere; the dream starts from each "
        f"real episode's encoded first frame ({d0['provenance']['flow_steps']} Euler steps, "
        f"flow seed per start shared by all policies); scripted policies' real actions are "
        f"replayed in the dream, saved feature policies (BC, PPO) run closed loop in both. "
        f"Success: the simulator's at any control step vs the env's estimate (the bundle's "
        f"progress head) at any chunk. "
        f"Wall-clock: {times}, one simulator process with another job on the two "
        f"cores; the dream side takes under a minute (cached real episodes are reused "
        f"on a re-run). "
    )
    plots = " ".join(f"[{s}](benchmarks/results/dream_vs_real_{s}.png)" for s in runs)
    return "\n".join([*out, "", extra + stamp(d0), "", f"Plots: {plots}."])
