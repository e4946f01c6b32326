"""The optimiser in the dream (`ppo_in_dream.py`): does PPO climb its own objective, and does
the climb hold in reality?"""

from __future__ import annotations

from .common import fmt_wilson, load_result, stamp


def ppo_in_dream() -> str:
    d = load_result("ppo_in_dream.json")
    if d is None or not d.get("arms"):
        return "_not run yet: `python benchmarks/ppo_in_dream.py`_"
    out = [
        "| arm | imagined return: bc → bc + PPO | paired difference (95 % t) | starts better / "
        "worse | imagined success bc → bc + PPO | real success of bc + PPO (bc) | mean KL / "
        "iteration | iterations stopped early | critic's explained variance |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = d.get("base_real")
    base_cell = f" ({base['success']}/{base['episodes']})" if base else ""
    for key, r in d["arms"].items():
        vs, ret, suc = r["vs_bc"]["returns"], r["imagined_return"], r["imagined_success"]
        real = r.get("real")
        real_cell = (
            "-"
            if real is None
            else fmt_wilson(real["success"], real["episodes"], *real["wilson95"])
        )
        out.append(
            f"| {key} | {ret['bc']:.2f} → {ret['bc+ppo']:.2f} | {vs['mean']:+.2f} "
            f"[{vs['ci95'][0]:+.2f}, {vs['ci95'][1]:+.2f}] | {vs['wins']} / {vs['losses']} "
            f"| {suc['bc']}/{suc['episodes']} → {suc['bc+ppo']}/{suc['episodes']} "
            f"({r.get('success_estimate', 'progress_head')}) "
            f"| {real_cell}{base_cell} | {r['approx_kl']:.3f} | {r['early_stopped']:.0%} "
            f"| {r['explained_variance']:.2f} |"
        )
    return "\n".join(
        [
            *out,
            "",
            f"{d['suite']} bundle, {d['provenance']['ppo_steps']:,} dream env steps per arm; "
            "imagined returns on every reset-bank start, deterministic, the same flow noise for "
            "both policies; real episodes on the init states 0..n-1 for both. " + stamp(d),
        ]
    )


def _label(name: str, run: dict) -> str:
    """An entry's title: its reward mode, and its own name where that says more."""
    reward = f"reward `{run['reward_mode']}`"
    return reward if name == run["reward_mode"] else f"{reward}: {name}"


def main_job() -> str:
    d = load_result("main_job.json")
    if d is None or not d.get("runs"):
        return "_not run yet: `python benchmarks/main_job.py --run runs/wmrl`_"
    out = []
    for mode, run in d["runs"].items():
        out += [
            f"**{run['suite']}, {_label(mode, run)}** "
            f"({run['ppo']['env_steps']:,} dream env steps, "
            f"PPO {run['ppo']['wall_clock_s'] / 60:.1f} min, "
            f"all {run['wall_clock_s'] / 60:.1f} min):",
            "",
            "| policy | dream env steps | imagined return | paired with bc (95 % t) | starts "
            "better / worse | imagined success | real success |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, p in run["policies"].items():
            im, vs, real = p["imagined"], p["vs_bc"], p["real"]
            pair = (
                "-"
                if vs is None
                else (
                    f"{vs['returns']['mean']:+.2f} [{vs['returns']['ci95'][0]:+.2f}, "
                    f"{vs['returns']['ci95'][1]:+.2f}] | {vs['returns']['wins']} / "
                    f"{vs['returns']['losses']}"
                )
            )
            if vs is None:
                pair += " | -"
            real_cell = "-" if real is None else f"{real['success']}/{real['episodes']}"
            out.append(
                f"| {name} | {p['steps']:,} | {im['return']:.2f} | {pair} | "
                f"{im['success']}/{im['episodes']} | {real_cell} |"
            )
        out += ["", stamp(run), ""]
    return "\n".join(out).rstrip()


def exploit_signal() -> str:
    d = load_result("exploit_signal.json")
    if d is None or not d.get("suites"):
        return "_not run yet: `python benchmarks/exploit_signal.py`_"
    out = [
        "| suite | row | seed | flow-sample spread × the base's | real success (base, same "
        "episodes) |",
        "|---|---|---|---|---|",
    ]
    notes = []
    flag = d["config"]["flag"]
    for suite, e in d["suites"].items():
        for p in e["policies"]:
            out.append(
                f"| {suite} | {p['row']} | {p['seed']} | {p['ratio']:.3f} | "
                f"{p['real']}/{p['episodes']} ({p['base_real']}) |"
            )
        rho = e["spearman_ratio_vs_real_gain"]
        notes.append(
            f"{suite}: {e['starts']} starts; Spearman of the spread ratio with the real gain "
            f"{'n/a' if rho is None else f'{rho:+.2f}'}; {e['flagged']} policies above "
            f"×{1 + flag:.2f}, {e['flagged_that_lost']} of them lost real episodes; "
            f"{e['unflagged_that_lost']} of the other {e['unflagged']} lost"
        )
    text = (
        f"Every policy closed loop in the dream from the same reset-bank starts and flow noise, "
        f"{d['config']['samples']} flow samples per step; spread = std between them, averaged "
        f"over starts and steps. " + ". ".join(n[0].upper() + n[1:] for n in notes) + "."
    )
    return "\n".join([*out, "", text + " " + stamp(d)])
