"""RL in the dream judged in reality (`rl_in_dream_reacher.py`, `rl_in_dream_manip.py`)."""

from __future__ import annotations

import re

from .common import bundle_notes, fmt_wilson, load_result, planner_search, reward_mode_label, stamp


def rl_in_dream_reacher() -> str:
    d = load_result("rl_in_dream_reacher.json")
    if d is None or not d.get("arms"):
        return "_not run yet: `python benchmarks/rl_in_dream_reacher.py`_"
    names = {
        "dream": "SB3 PPO trained in the dream",
        "real": "SB3 PPO trained in the real sim",
        "random": "uniform random",
        "bc": "the bundle's BC",
        "planner": "dream planner (MPC)",
        "bc+ppo": "the base + a residual head trained by PPO in the dream (Lift/LIBERO recipe)",
    }
    kinds = dict(names)  # what each kind of arm is, before a row adds its settings
    for k, r in d["arms"].items():
        how = f", {planner_search(r['planner'])}" if "planner" in r else ""
        if r.get("planner_base"):  # it searched around another arm's policy
            how = how.replace("the base", f"`{r['planner_base']}`")
        kind = k.split(" ")[0]
        name = names.get(k, kinds.get(kind, k))
        if kind in ("planner", "dream", "bc+ppo"):
            name = kinds[kind] + how
        elif kind == "planner-wm" and r.get("world_model"):
            name = f"the planner dreaming with `{r['world_model']}`{how}"
        settings = [name]
        if kind in ("planner", "planner-wm", "dream", "bc+ppo"):
            settings.append(f"{reward_mode_label(r)} reward")
        if r.get("obs_mode") == "features+proprio":
            settings.append("reads the body")
        if r.get("policy_input") == "goal":
            settings.append("reads the scene through the bundle's goal readout")
        if kind == "real" and r.get("artifacts") and r["artifacts"] != d.get("bundle"):
            settings.append(f"bundle `{r['artifacts']}`")  # the reward label names the others'
        if r.get("action_mode") == "chunk":
            settings.append("acts in whole chunks")
        if (r.get("group_size") or 1) > 1:
            settings.append(f"groups of {r['group_size']} envs sharing a start and the flow "
                            "noise, group-relative advantages")  # fmt: skip
        if r.get("reset_starts"):
            starts = r["reset_starts"]
            settings.append(f"from the first frames of `{starts}`, not the bundle's starts")
        names[k] = "; ".join(settings)
    out = [
        "| arm | policy | training (CPU min) | env steps | real success (Wilson 95 %) | "
        "real return | s / decision |",
        "|---|---|---|---|---|---|---|",
    ]
    if (d["arms"].get("bc") or {}).get("method") == "bc+rla":
        names["bc"] = "the bundle's base: BC + RLA head"
    for k, r in d["arms"].items():
        tm = r.get("train_minutes")
        steps = f"{r['timesteps']:,}" if "timesteps" in r else "-"
        out.append(
            f"| {k} | {names.get(k, k)} | {'-' if tm is None else f'{tm:.1f}'} | {steps} "
            f"| {fmt_wilson(r['success'], r['episodes'], *r['wilson95'])} | "
            f"{r['return']:.2f} | {r['mean_decision_s']:.2f} |"
        )
    arms, t = d["arms"], d["targets"]
    # A setting's training seeds are pooled: picking the luckiest seed of a setting would
    # report noise as the setting's result.
    settings: dict[str, list[str]] = {}
    for k in arms:
        settings.setdefault(re.sub(r",? ?seed \d+$", "", k), []).append(k)

    def pooled(setting: str) -> tuple[int, int]:
        rows = [arms[k] for k in settings[setting]]
        return sum(r["success"] for r in rows), sum(r["episodes"] for r in rows)

    def share(setting: str) -> float:
        k, n = pooled(setting)
        return k / n

    def best(kinds: tuple[str, ...]) -> str | None:
        found = [s for s in settings if s.split(" ")[0] in kinds]
        return max(found, key=share) if found else None

    def said(setting: str) -> str:
        (k, n), seeds = pooled(setting), len(settings[setting])
        return f"`{setting}`{f' ({seeds} seeds)' if seeds > 1 else ''} {k}/{n}, {100 * k / n:.0f} %"

    verdicts = []
    if dream := best(("dream",)):
        real = best(("real",))  # the best arm trained in the real simulator, whatever it reads
        above = real is not None and share(dream) > share(real)
        level = share(dream) >= t["dream_success_min"]
        ok = level and above
        verdict = "met" if ok else "above the real arm, under 60 %" if above else "missed"
        if level and not above:
            tie = real is not None and share(dream) == share(real)
            verdict += (" (60 % reached; level with the real-trained arm, not above it)" if tie
                        else " (60 % reached; the real-trained arm is not beaten)")  # fmt: skip
        verdicts.append(
            f"best dream-trained PPO setting ({said(dream)}; target ≥ "
            f"{100 * t['dream_success_min']:.0f} % and above the best real-trained setting, "
            f"{said(real) if real else 'none'}): "
            f"{verdict}"
        )
    if (residual := best(("bc+ppo",))) and "bc" in arms:
        base = arms["bc"]["per_episode_success"]
        pairs = [p for k in settings[residual]  # the same seeds as the base, per training seed
                 for p in zip(arms[k]["per_episode_success"], base, strict=True)]  # fmt: skip
        dreamed = [arms[k]["dream_vs_bc"]["returns"] for k in settings[residual]
                   if "dream_vs_bc" in arms[k]]  # fmt: skip
        imagined = ", ".join(f"{r['mean']:+.2f} [{r['ci95'][0]:+.2f}, {r['ci95'][1]:+.2f}]"
                             for r in dreamed)  # fmt: skip
        verdicts.append(
            f"best residual PPO on the base ({said(residual)}) against the base's "
            f"{sum(b for _, b in pairs)}/{len(pairs)} on the same seeds "
            f"({sum(a and not b for a, b in pairs)} wins, {sum(b and not a for a, b in pairs)} "
            "losses; the base's success, not counted as learned in the dream"
            + (
                f"; its imagined return minus the base's, paired on the same dreamed starts: "
                f"{imagined}"
                if imagined
                else ""
            )
            + ")"
        )
    if planner := best(("planner", "planner-wm")):
        ok = share(planner) >= t["planner_success_min"]
        against = ""
        if "bc" in arms:  # episode by episode against the base it plans around, same seeds
            base = arms["bc"]["per_episode_success"]
            pairs = [p for k in settings[planner]
                     for p in zip(arms[k]["per_episode_success"], base, strict=True)]  # fmt: skip
            against = (f"; {sum(a and not b for a, b in pairs)} episodes won and "
                       f"{sum(b and not a for a, b in pairs)} lost against the base")  # fmt: skip
        verdicts.append(
            f"best planner ({said(planner)}; target ≥ "
            f"{100 * t['planner_success_min']:.0f} %): {'met' if ok else 'missed'}{against}"
        )
    a, b = d["eval_seeds"]
    extra = (
        f"{d['task']}, real seeds {a}..{b} for every arm, {d['horizon_chunks']} chunks of "
        f"{d['chunk']} control steps (the bundle's horizon), success = the finger touches "
        "the target; PPO actions are one action held for the chunk's control steps unless "
        "the row acts in whole chunks; the training column gives each PPO arm's CPU-minutes."
        + "".join(f" {v[0].upper()}{v[1:]}." for v in ["; ".join(verdicts)] if v)
    )
    on, earlier = bundle_notes(d, "arms")
    return "\n".join([*out, "", extra + on + earlier + " " + stamp(d)])


def rl_in_dream_manip(short: str) -> str:
    d = load_result(f"rl_in_dream_{short}.json")
    if d is None or not d.get("policies"):
        return (
            f"_not run yet: `python benchmarks/rl_in_dream_manip.py --suite "
            f"{'libero' if short == 'libero' else 'robosuite-lift'}`_"
        )
    base = d["policies"].get("bc", {}).get("method", "bc")
    names = {
        "bc": "the bundle's base: "
        + ("BC + RLA head (action-free videos too)" if base == "bc+rla" else "plain BC"),
        "bc-plain": "plain BC (same labelled episodes, no RLA head)",
        "bc+ppo": "base + residual PPO in the dream (pooled)",
        "bc-plain+ppo": "plain BC + residual PPO in the dream (pooled)",
        "bc+ppo-short": "the same, paper's episodes: 6 chunks, half from mid-demo (pooled)",
        "planner": "dream planner (MPC, residual around the base's chunk)",
        "distilled": "planner distilled into the base's residual head",
    }
    out = [
        "| policy | what | real success (Wilson 95 %) | base on the same episodes | per seed "
        "| imagined success, return (base's) |",
        "|---|---|---|---|---|---|",
    ]
    for k, r in d["policies"].items():
        seeds = (
            ", ".join(f"{s['seed']}: {s['success']}/{s['episodes']}" for s in r.get("per_seed", []))
            or "-"
        )
        same = f"{r['base_same_episodes']}/{r['episodes']}" if "base_same_episodes" in r else "-"
        kind = k.split(" ")[0]
        what = names.get(k, names.get(kind, k))
        if kind == "planner":
            what = f"{names['planner']}; {reward_mode_label(r)} reward"
        elif k not in names and "per_seed" in r:  # a tagged residual-PPO variant
            runs = r["per_seed"]
            what += (f"; {reward_mode_label(runs[0])} reward, residual "
                     f"{r['residual_scale']:g}, lr {r['residual_lr']:g}, "
                     f"{r['ppo_steps']:,} dreamed chunks per seed")  # fmt: skip
            if r.get("uncertainty_penalty"):
                what += f", minus {r['uncertainty_penalty']:g} × the flow-sample spread"
        imagined = "-"  # rows older than the key were scored by another success estimate
        if (i := r.get("imagined")) and (b := r.get("imagined_base")):
            imagined = (f"{i['success']}/{i['episodes']} ({b['success']}), "
                        f"{i['return']:.2f} ({b['return']:.2f})")  # fmt: skip
        out.append(
            f"| {k} | {what} | "
            f"{fmt_wilson(r['success'], r['episodes'], *r['wilson95'])} | {same} | {seeds} "
            f"| {imagined} |"
        )
    planned = d["config"].get("seeds", [])
    for k, ppo in d["policies"].items():  # the seeded (PPO) rows
        if "per_seed" in ppo and len(ppo["per_seed"]) < len(planned):
            out += [
                "",
                f"_{k}: {len(ppo['per_seed'])} of the {len(planned)} planned seeds "
                "finished so far; a re-run resumes the rest._",
            ]
    gain = d.get("best_over_bc_points")
    verdict = (
        ""
        if gain is None
        else f"Best dream-improved policy over the base (bc): {d['best']} {gain:+.0f} points "
        f"(target ≥ +{d['target_points']:g}): "
        f"{'met' if gain >= d['target_points'] else 'missed'}."
    )
    if gain is not None and (i := d["policies"][d["best"]].get("imagined")):
        b = d["policies"][d["best"]]["imagined_base"]
        verdict += (f" Its imagined success {i['success']}/{i['episodes']} against the base's "
                    f"{b['success']}/{b['episodes']} on the same dreamed starts (target: not "
                    f"below): {'met' if i['success'] >= b['success'] else 'missed'}.")  # fmt: skip
    plain, base_row = d["policies"].get("bc-plain"), d["policies"].get("bc")
    if plain is not None and base_row is not None:
        lift = 100 * (
            base_row["success"] / base_row["episodes"] - plain["success"] / plain["episodes"]
        )
        verdict += f" The base over plain BC: {lift:+.0f} points (not learned in the dream)."
    for k, pts in d.get("over_own_base_points", {}).items():
        own = d["policies"][k].get("base", "bc")
        if own != "bc":
            verdict += f" {k} over its own base ({own}) on the same episodes: {pts:+.0f} points."
    on, note = bundle_notes(d, "policies")
    return "\n".join([*out, "", f"{d['task']}; {d['protocol']}.{on} {verdict}{note} {stamp(d)}"])
