"""Does the dream follow the robot's body? (`body_state.py`)."""

from __future__ import annotations

from pathlib import Path

from rla_gym.utils.provenance import bundle_rows

from .common import (
    fmt_opt,
    fmt_verdict,
    load_result,
    replaced_reacher_bundle,
    stamp,
)

SUITES = ("dmc-reacher", "robosuite-lift", "libero")


def _at_least(x: float | None, bar: float) -> str:
    return fmt_verdict(None if x is None else x >= bar, bar - (x or 0.0))


REFERENCE_ARMS = (
    "planner progress, from scratch, horizon 3",
    "planner distance head, from scratch, horizon 3",
    "planner progress, horizon 3",
    "dream",
    "dream progress",
    "real",
    "bc",
)
"""Rows of ``rl_in_dream_reacher.json`` from the features-only dream, beside the body's."""


def _against(arm: dict, base: dict) -> str:
    """Successes gained over the base on the same seeds, e.g. ``+5``."""
    return f"{arm['success'] - base['success']:+d}"


def _wins_losses(arm: dict, base: dict) -> str:
    """Episode by episode against the base on the same seeds: ``"5 wins, 0 losses"``."""
    from rla_gym.utils.stats import paired_difference

    vs = paired_difference(arm["per_episode_success"], base["per_episode_success"])
    return f"{vs['wins']} wins, {vs['losses']} losses"


def _planner_rows() -> list[str]:
    """The reacher planner in a dream with the body (``body_planner_reacher.json``) beside the
    same planner in the features-only dream, on the same real seeds."""
    body = load_result("body_planner_reacher.json")
    if body is None:
        return []
    # The features-only reacher dream's rows: the shipped bundle's before it dreamed the body.
    shipped = load_result("rl_in_dream_reacher.json") or {}
    created = replaced_reacher_bundle() or shipped.get("bundle_created_utc")
    ref = {"arms": bundle_rows(shipped, created, "arms")}
    out = [
        "| reacher arm (real seeds 10000-10049) | dream | real success (from scratch: ≥ 70 %) |",
        "|---|---|---|",
    ]
    base = ref["arms"].get("bc")
    rl = load_result("body_rl_reacher.json") or {"arms": {}}  # PPO from scratch in the dream
    for name, arm in body["arms"].items():
        if not name.startswith("planner"):
            continue
        rate = arm["success"] / arm["episodes"]
        # Around a policy trained from scratch in the dream (body_rl_reacher.json's row).
        around = rl["arms"].get(arm.get("planner_base") or "")
        if "from scratch" in name:
            verdict = "met" if rate >= 0.7 else f"missed by {0.7 - rate:.0%}"
            if around is not None:
                verdict += (f"; {_against(arm, around)} against the PPO it searches around "
                            f"({around['success']}/{around['episodes']}; "
                            f"{_wins_losses(arm, around)})")  # fmt: skip
        elif base is not None:
            verdict = f"{_against(arm, base)} against the base ({_wins_losses(arm, base)})"
        else:
            verdict = ""
        out.append(f"| {name} | with the body | {arm['success']}/{arm['episodes']}: {verdict} |")
    more = load_result("body_planner_reacher_seeds2.json")
    if more is not None:
        # The same planner on 50 further seeds, beside the base on those seeds.
        arms = more["arms"]
        bc = next((a for n, a in arms.items() if n.startswith("bc")), None)
        for name, arm in arms.items():
            if not name.startswith("planner") or bc is None:
                continue
            out.append(
                f"| {name} | with the body | {arm['success']}/{arm['episodes']}: "
                f"{_against(arm, bc)} against the base's {bc['success']}/{bc['episodes']} on "
                f"those seeds ({_wins_losses(arm, bc)}) |"
            )
    for name, arm in rl["arms"].items():
        # PPO from scratch in the body dream (SB3); the #27 bar is 60 % real.
        reads = "reads the body" if arm.get("obs_mode") == "features+proprio" else "reads features"
        if arm.get("policy_input") == "goal":  # SB3GoalExtractor: the head's goal, not a pooler
            reads = "reads the bundle's goal readout and the body"
            if arm.get("goal_head"):  # a readout other than the reward's head
                reads = f"reads the goal readout of `{arm['goal_head']}` and the body"
        rate = arm["success"] / arm["episodes"]
        minutes = f", {arm['train_minutes']:.0f} CPU-min" if arm.get("train_minutes") else ""
        if name.startswith("real"):  # the comparison arm: PPO trained in the real simulator
            out.append(f"| PPO trained in the real simulator, {reads} (`{name}`{minutes}) "
                       f"| - | {arm['success']}/{arm['episodes']} |")  # fmt: skip
            continue
        verdict = "met" if rate >= 0.6 else f"missed by {0.6 - rate:.0%}"
        out.append(f"| PPO from scratch, {arm.get('reward_mode')} reward, {reads} "
                   f"(`{name.removeprefix('dream ')}`{minutes}) | with the body "
                   f"| {arm['success']}/{arm['episodes']}: ≥ 60 % {verdict} |")  # fmt: skip
    for name in REFERENCE_ARMS:
        if arm := ref["arms"].get(name):
            kinds = {"planner": "features only", "dream": "features only (PPO from scratch)",
                     "real": "- (PPO in the real simulator)"}  # fmt: skip
            dream = kinds.get(name.split(" ")[0], "- (the base policy)")
            out.append(f"| {name} | {dream} | {arm['success']}/{arm['episodes']} |")
    return [*out, ""]


def body_state() -> str:
    d = load_result("body_state.json")
    if d is None:
        return "_not run yet: `python benchmarks/body_state.py --body-wm suite=checkpoint`_"
    head = [
        "suite",
        "proprio R² 1 chunk (≥ 0.95)",
        "4 chunks (≥ 0.8)",
        "body stays (1 / 4)",
        "body direction (1 / 4)",
        "feature direction, body model / bundle",
        "reward ranking: head that reads the body / the bundle's (≥ 0.8)",
        "body model's training",
    ]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for suite in SUITES:
        s = d["suites"].get(suite)
        if s is None:
            rows.append(f"| {suite} | not measured yet |" + " |" * (len(head) - 2))
            continue
        r2, stay, dirn = s["proprio_r2"], s["proprio_r2_stay"], s["proprio_direction"]
        rank = s.get("reward_ranking", {})
        p = rank.get("progress")
        head_name = {"effector": "effector-goal head", "goal": "goal-body head",
                     "body": "fraction head"}.get(rank.get("head"), "")  # fmt: skip
        others = [(label, rank.get(key)) for label, key, heads in (
            ("joint-space goal head", "goal_body_head", ("effector",)),
            ("fraction head", "body_fraction_head", ("effector", "goal")),
        ) if rank.get("head") in heads and rank.get(key) is not None]  # fmt: skip
        ranking = (
            f"{fmt_opt(p, '.2f')} ({head_name}"
            + "".join(f"; {label} {v:.2f}" for label, v in others)
            + f") / {fmt_opt(rank.get('features_only_progress'), '.2f')}: {_at_least(p, 0.8)}"
            if p is not None
            else rank.get("why", "not measured")
        )
        fd, fb = s["feature_direction"]["1"], s["feature_direction_bundle"]["1"]
        meta = s["run"].get("body_world_model_meta") or {}
        steps = (meta.get("train_config") or {}).get("trainer", {}).get("steps")
        minutes = meta.get("wall_clock_s")
        cost = (
            f"{steps} steps warm-started from the bundle's model, {minutes / 60:.0f} min"
            if steps and minutes
            else "-"
        )
        rows.append(
            f"| {suite} | {r2['1']:.3f}: {_at_least(r2['1'], 0.95)} | "
            f"{r2['4']:.3f}: {_at_least(r2['4'], 0.8)} | "
            f"{stay['1']:.2f} / {stay['4']:.2f} | {dirn['1']:.2f} / {dirn['4']:.2f} | "
            f"{fd:.3f} / {fb:.3f}: {'no worse' if fd >= fb - 0.01 else 'worse'} | "
            f"{ranking} | {cost} |"
        )
    n = {s: d["suites"][s]["run"]["states"] for s in d["suites"]}
    return "\n".join(
        [
            *rows,
            "",
            *_planner_rows(),
            "",
            f"_Held-out real starts per suite: {n}; R² over every entry of the body vector of "
            "the rollout from the real start with the recorded actions; 'body stays' is the R² "
            "of predicting no change. Feature direction: the counterfactual metric of both "
            "models on the very same real outcomes and flow noise ('no worse' allows 0.01)._",
            "",
            stamp(d),
        ]
    )


def body_policy() -> str:
    """Plain BC with and without the body, in the real simulator (``body_policy.py``)."""
    d = load_result("body_policy.json")
    if d is None:
        return "_not run yet: `python benchmarks/body_policy.py`_"
    p = d["protocol"]
    out = [
        "| suite | recipe | on the features | on the features and the body | paired difference "
        "(body − features), 95 % interval | episodes won / lost | held-out action MSE, "
        "features / body |",
        "|---|---|---|---|---|---|---|",
    ]
    for suite, s in d["suites"].items():
        arms = s["arms"]
        for pair, pd in s.get("paired", {}).items():
            new, old = pair.split(" vs ")
            cells = []
            for a in (old, new):
                r = arms[a]["real"]
                lo, hi = (100 * x for x in r["wilson95"])
                cells.append(f"{r['success']}/{r['episodes']} [{lo:.0f}, {hi:.0f}] %")
            lo, hi = (100 * x for x in pd["ci95"])
            mse = (arms[a]["heldout_action_mse"] for a in (old, new))
            recipe = "BC + RLA head (the bases' recipe)" if arms[old].get("rla_head") else "BC"
            out.append(
                f"| {suite} | {recipe} | {cells[0]} | {cells[1]} | {100 * pd['mean']:+.0f} points "
                f"[{lo:+.0f}, {hi:+.0f}] | {pd['wins']} / {pd['losses']} | "
                f"{' / '.join(f'{x:.3f}' for x in mse)} |"
            )
    out += [
        "",
        f"_Every arm: `rla-gym train-bc` on every labelled expert episode, {p['steps']} steps, "
        f"seed {p['seed']}; the body arms with `--proprio`; the RLA-head arms with the embedded "
        "bundle's RLA and the expert and noisy episodes as videos. Real: the same starts for both "
        f"(LIBERO init states 0..n-1, seeds {p['eval_seed']}+i elsewhere), the task's evaluation "
        "horizon (reacher: the bundle's 40 steps); the body arm is shown the real body._",
        "",
        stamp(d),
    ]
    return "\n".join(out)


def _bundle_name(path: str) -> str:
    """The embedded bundle by name (its absolute path is the measuring machine's), else the
    folder."""
    return "the shipped bundle" if "rla_gym/envs/assets/" in path else f"`{path}`"


def goal_readout() -> str:
    """A goal-readout policy in reality, told the true target, and in the dream
    (``goal_readout.py``)."""
    d = load_result("goal_readout.json")
    if d is None:
        return "_not run yet: `python benchmarks/goal_readout.py --policies name=<ppo.zip>`_"
    out = [
        "| policy | real (its readout) | real, told the true target | imagined, same starts "
        "| readout error at the start (median) | goal drift in an episode, real / dream "
        "| bundle (built) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, p in d["policies"].items():
        cells = [f"{p[k]['success']}/{p[k]['episodes']}" for k in
                 ("real", "real_true_goal", "imagined")]  # fmt: skip
        drift = p["goal_drift_m"]
        out.append(
            f"| {name} | {' | '.join(cells)} | {100 * p['readout_error_m']['median']:.1f} cm | "
            f"{100 * drift['real']:.1f} / {100 * drift['dream']:.1f} cm | "
            f"{_bundle_name(p.get('bundle', d.get('bundle', '')))} "
            f"({p.get('bundle_created_utc', d.get('bundle_created_utc', ''))[:10]}) |"
        )
    seeds = d["eval_seeds"]
    return "\n".join([
        *out,
        "",
        f"_dm-control reacher-easy, real seeds {seeds[0]}-{seeds[1]} (rl_in_dream_reacher.py's), "
        f"the bundle's horizon; dreamed at {d['flow_steps']} Euler steps per chunk; success = "
        "the finger touches the target (reacher-easy: within 6 cm of its centre). A joint-space "
        "readout is told the joint angles that reach the true target (the elbow nearest the "
        "arm's at the start) and placed by forward kinematics for its error._",
        "",
        stamp(d),
    ])  # fmt: skip


def reacher_policy_input() -> str:
    """PPO on reacher's true state, the goal shown in three forms (``reacher_policy_input.py``)."""
    d = load_result("reacher_policy_input.json")
    if d is None:
        return "_not run yet: `python benchmarks/reacher_policy_input.py`_"
    names = {
        "effector": "where the target is from the fingertip (an effector-goal readout's form)",
        "sincos": "the goal's joint angles as sin / cos, the body's, their gap (a joint-space "
        "readout without angle errors)",
        "angles": "the same plus each joint's wrapped angle error (`SB3GoalExtractor` on a "
        "joint-space head)",
    }
    arms, n = d["arms"], None
    out = [
        "| goal shown to PPO | real success per seed, after training | per seed, by chunks "
        "trained |",
        "|---|---|---|",
    ]
    for form, label in names.items():
        runs = [r for r in arms.values() if r.get("form") == form]
        if not runs:
            continue
        n = runs[0]["episodes"]
        finals = " / ".join(f"{r['success']}/{r['episodes']}" for r in runs)
        curves = "; ".join(
            ", ".join(f"{c['chunks'] // 1024}k: {c['success']}" for c in r["curve"]) for r in runs
        )
        out.append(f"| {label} | {finals} | {curves} |")
    held = arms["expert, held"]
    p, seeds = d["ppo"], d["eval_seeds"]
    return "\n".join([
        *out,
        f"| no learning: the scripted IK + PD expert deciding once per chunk, its torque held "
        f"| {held['success']}/{held['episodes']} | - |",
        "",
        f"_dm-control reacher-easy in the real simulator, no camera: the true state, one torque "
        f"held for each chunk of {d['chunk']} control steps, {d['horizon_chunks']} chunks; reward "
        "minus the finger-to-target distance at each chunk's end, +1 and the episode ends on a "
        f"touch. SB3 PPO with rl_in_dream_reacher.py's settings ({p['envs']} envs, n_steps "
        f"{p['n_steps']}, batch {p['batch_size']}, {p['n_epochs']} epochs, lr "
        f"{p['learning_rate']}, gamma {p['gamma']}, MLP {p['net_arch']}), seeds "
        f"{', '.join(str(s) for s in d['provenance']['seed'])}; judged on {n} held-out starts "
        f"(seeds {seeds[0]}-{seeds[1]}, apart from the 10000+ of every RL arm)._",
        "",
        stamp(d),
    ])  # fmt: skip


def body_dynamics() -> str:
    """The dreamed body under a policy's own actions: world-model head vs body model
    (``body_dynamics.py``)."""
    d = load_result("body_dynamics.json")
    if d is None:
        return "_not run yet: `python benchmarks/body_dynamics.py --artifacts <bundle> --policy P`_"
    names = {
        "world_model": "the world model's body head (reads the scene too)",
        "body_model": "the bundle's body model (`train-body`: body + action chunk)",
    }
    out = []
    for suite, b in d["bundles"].items():
        h = len(b["sources"]["body_model"]["effector_gap_m"])
        out += [
            f"| {suite}: dreamed body from | effector gap after 1 ... {h} chunks (cm) | body R² "
            f"after 1 ... {h} chunks |",
            "|---|---|---|",
        ]
        for src, label in names.items():
            r = b["sources"][src]
            gap = " / ".join(f"{100 * g:.1f}" for g in r["effector_gap_m"])
            r2 = " / ".join(f"{x:.3f}" for x in r["body_r2"])
            out.append(f"| {label} | {gap} | {r2} |")
        bm = b["body_model"]
        out += [
            "",
            f"_{b['episodes']} real episodes (seeds {b['eval_seeds'][0]}-{b['eval_seeds'][1]}, "
            f"apart from the RL arms' 10000+) of `{Path(b['policy']).parent.name or b['policy']}` "
            f"({b['real_success']}/{b['episodes']} real successes), its actions replayed open "
            f"loop in the dream from the encoded first frame and the real body, "
            f"{b['flow_steps']} Euler steps; bundle `{b['bundle']}`. The body model: trained in "
            f"{bm['wall_clock_s']:.0f} s on {bm['train_episodes']} episodes of `{bm['data']}`, "
            f"held-out R² {bm['val_r2']['1']['pooled']:.4f} / {bm['val_r2']['4']['pooled']:.4f} "
            f"after 1 / 4 chunks._",
            "",
            stamp(b),
        ]
    return "\n".join(out)
