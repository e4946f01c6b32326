"""Render the benchmark JSONs in ``benchmarks/results/`` as the README's tables.

Every number in the README's benchmark section comes from here:

    python benchmarks/report.py            # rewrite the marked blocks of README.md
    python benchmarks/report.py --print    # only print the markdown
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
README = Path(__file__).parents[1] / "README.md"


def _load(name: str) -> dict | None:
    p = RESULTS / name
    return json.loads(p.read_text()) if p.exists() else None


def _opt(x: float | None, spec: str = ".3f") -> str:
    """A number, or ``-`` where a row did not measure it."""
    return "-" if x is None else format(x, spec)


def _stamp(d: dict) -> str:
    p = d["provenance"]
    return (
        f"_{p['machine']['cpu']}, {p['machine']['cores']} cores, torch threads "
        f"{p['machine']['torch_threads']}; git `{p['git_sha'][:12]}`, {p['time_utc']}._"
    )


def sim_throughput() -> str:
    d = _load("sim_throughput.json")
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
    return "\n".join([*out, "", "steps/s, one process, " + _stamp(d)])


def encoder_throughput() -> str:
    d = _load("encoder_throughput.json")
    if d is None:
        return "_not run yet: `python benchmarks/encoder_throughput.py`_"
    out = ["| encoder | px | dtype | batch | images/s |", "|---|---|---|---|---|"]
    for r in d["rows"]:
        out.append(
            f"| {r['encoder']} | {r['resolution']} | {r['dtype']} | {r['batch']} | "
            f"{r['images_per_s']:.1f} |"
        )
    return "\n".join([*out, "", _stamp(d)])


def expert_success() -> str:
    d = _load("expert_success.json")
    if d is None:
        return "_not run yet: `python benchmarks/expert_success.py`_"
    noisy = _load("noisy_success.json")  # `--policy noisy --out .../noisy_success.json`
    out = ["| simulator | policy | success | Wilson 95 % | episodes |", "|---|---|---|---|---|"]
    for r in d["rows"] + (noisy["rows"] if noisy else []):
        lo, hi = r["wilson95"]
        out.append(
            f"| {r['sim']} | {r['policy']} | {r['successes']}/{r['episodes']} "
            f"({100 * r['success_rate']:.0f} %) | [{100 * lo:.0f}, {100 * hi:.0f}] % | "
            f"{r['episodes']} |"
        )
    return "\n".join([*out, "", d["protocol"] + ". " + _stamp(d)])


def fidelity() -> str:
    d = _load("fidelity.json")
    if d is None:
        return "_not run yet: `python benchmarks/fidelity.py ...`_"
    hs = d["config"]["horizons"]
    lines = [
        "| model | "
        + " | ".join(f"L1 @ {h}" for h in hs)
        + " | "
        + " | ".join(f"cos @ {h}" for h in hs)
        + " | train steps | train time |",
        "|---|" + "---|" * (2 * len(hs) + 2),
    ]
    for name, m in d["models"].items():
        l1, cos = m["metrics"]["l1"], m["metrics"]["cosine"]
        wc, st = m.get("train_wall_clock_s"), m.get("train_steps")
        lines.append(
            f"| {name} | "
            + " | ".join(f"{l1[str(h)]:.4f}" for h in hs)
            + " | "
            + " | ".join(f"{cos[str(h)]:.4f}" for h in hs)
            + " | "
            + f"{st if st is not None else '-'} | "
            + f"{'-' if wc is None else f'{wc / 60:.1f} min'} |"
        )
    c, r = d["config"], d["rla_reconstruction"]
    extra = (
        f"{c['val_episodes']} held-out episodes, {c['starts_per_episode']} start frames each, "
        f"chunks of {c['chunk']} control steps, {c['flow_steps']} Euler steps, seed "
        f"{c['seed']}, device {c['device']}, encoder `{c['encoder_fingerprint']}`. "
        f"Single-step RLA reconstruction at gap {r['gap']}: L1 {r['l1']:.4f}, cosine "
        f"{r['cosine']:.4f}."
    )
    return "\n".join(
        [*lines, "", extra + " " + _stamp(d), "", "![fidelity](benchmarks/results/fidelity.png)"]
    )


def _verdict(ok: bool | None, gap: float = 0.0, spec: str = ".2f") -> str:
    if ok is None:
        return "not measured"
    return "met" if ok else f"missed by {gap:{spec}}"


def counterfactual() -> str:
    d = _load("counterfactual.json")
    if d is None or not d.get("suites"):
        return "_not run yet: `python benchmarks/counterfactual.py`_"
    t = d["targets"]
    lo_r, hi_r = t["magnitude_ratio_range"]
    ha, hl = t["agreement_horizon"], t["l1_horizon"]
    order = ["libero", "robosuite-lift", "dmc-reacher"]
    suites = sorted(d["suites"], key=lambda s: order.index(s) if s in order else len(order))

    def pm(m: dict, key: str) -> str:
        se = m.get(f"{key}_se")
        return _opt(m[key], ".2f") + ("" if se is None or m[key] is None else f" ± {se:.2f}")

    out = [
        "| suite | model | chunks | direction | magnitude ratio | ranking Spearman | L1 | "
        "copy-last L1 | L1 / copy-last |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    checks: dict[str, list[str]] = {}
    costs = []
    for suite in suites:
        e = d["suites"][suite]
        for model, per_h in e.items():
            if model == "run":
                continue
            for h, m in per_h.items():
                label = f"{model}: RLA ceiling" if h == "rla_ceiling" else model
                chunks = m.get("horizon", "1") if h == "rla_ceiling" else h
                out.append(
                    f"| {suite} | {label} | {chunks} | {pm(m, 'direction')} | "
                    f"{pm(m, 'magnitude_ratio')} | {pm(m, 'ranking_spearman')} | "
                    f"{m['l1']:.4f} | {m['copy_last_l1']:.4f} | "
                    f"{m['l1'] / m['copy_last_l1']:.2f} |"
                )
        wm, direct = e.get("rla-wm", {}), e.get("direct")
        a, b = wm.get(ha), wm.get(hl)
        dirn = a and a["direction"]
        ratio = a and a["magnitude_ratio"]
        rho = a and a["ranking_spearman"]
        rel = b["l1"] / b["copy_last_l1"] if b else None
        checks[suite] = [
            f"{_opt(dirn, '.2f')}: "
            + _verdict(
                None if dirn is None else dirn >= t["direction_min"],
                t["direction_min"] - (dirn or 0),
            ),
            f"{_opt(ratio, '.2f')}: "
            + _verdict(
                None if ratio is None else lo_r <= ratio <= hi_r,
                max(lo_r - (ratio or 0), (ratio or 0) - hi_r),
            ),
            f"{_rho(rho)}: "
            + _verdict(
                None if rho is None else rho >= t["ranking_spearman_min"],
                t["ranking_spearman_min"] - (rho or 0),
            ),
            f"{_opt(rel, '.2f')}×: "
            + _verdict(
                None if rel is None else rel <= t["l1_over_copy_last_max"],
                (rel or 0) - t["l1_over_copy_last_max"],
            ),
            (
                "no direct-regression checkpoint"
                if direct is None or b is None
                else f"{b['l1']:.4f} vs {direct[hl]['l1']:.4f}: "
                + _verdict(b["l1"] <= direct[hl]["l1"], b["l1"] - direct[hl]["l1"], ".4f")
            ),
        ]
        run = e["run"]
        cpu = run.get("cpu_s")
        costs.append(
            f"{suite} {run['wall_clock_s']['total'] / 60:.1f} min"
            + ("" if cpu is None else f" ({cpu / 60:.1f} CPU-min)")
        )
    rows = [
        f"direction at {ha} chunk ≥ {t['direction_min']}",
        f"magnitude ratio at {ha} chunk in [{lo_r}, {hi_r}]",
        f"ranking Spearman at {ha} chunk ≥ {t['ranking_spearman_min']}",
        f"L1 at {hl} chunks ≤ {t['l1_over_copy_last_max']}× copy-last",
        f"L1 at {hl} chunks ≤ direct regression's",
    ]
    tgt = ["| target (RLA-WM) | " + " | ".join(suites) + " |", "|---" * (len(suites) + 1) + "|"]
    for i, name in enumerate(rows):
        tgt.append(f"| {name} | " + " | ".join(checks[s][i] for s in suites) + " |")
    run = d["suites"][suites[0]]["run"]
    c = run["config"]
    extra = (
        f"Per suite: {c['states']} real starts at chunk boundaries inside the dreamed "
        f"horizon, from {c['episodes']} held-out episodes (expert and noisy, reset seeds "
        f"{c['collection_seed']}+); {len(run['outcomes'])} action sequences from each "
        f"({', '.join(run['outcomes'])}); chunks of {run['chunk']} control steps; "
        f"± = standard error over starts; {c['flow_steps']} Euler steps, the outcomes of "
        f"one start share the flow noise; encoder `{run['encoder_fingerprint']}`; seed "
        f"{c['seed']}. No suite has a direct-regression checkpoint unless listed in the "
        f"table. Bundles measured (built): "
        + "; ".join(
            f"{s} {d['suites'][s]['run'].get('bundle_created_utc', '?')[:10]}" for s in suites
        )
        + f". Wall-clock with other jobs on the two cores: {'; '.join(costs)}. "
        + _stamp(d)
    )
    return "\n".join([*out, "", *tgt, "", *_direction_by_pair(d["suites"], suites), extra])


def _direction_by_pair(results: dict, suites: list[str]) -> list[str]:
    """One-chunk direction of every model per pair of action sequences (counterfactual.json
    written before the breakdown existed has none: nothing is rendered)."""
    rows, pairs = [], None
    for suite in suites:
        for model, per_h in results[suite].items():
            if model == "run":
                continue
            for h, m in per_h.items():
                if h not in ("1", "rla_ceiling") or "direction_by_pair" not in m:
                    continue
                by_pair, dist = m["direction_by_pair"], m["real_distance_by_pair"]
                pairs = pairs or list(by_pair)
                label = f"{model}: RLA ceiling" if h == "rla_ceiling" else model
                rows.append(
                    f"| {suite} | {label} | "
                    + " | ".join(f"{_opt(by_pair[p], '.2f')} ({dist[p]:.1f})" for p in pairs)
                    + " |"
                )
    if not rows:
        return []

    def short(pair: str) -> str:
        short = pair.replace("recorded+noise", "rec+").replace("recorded", "rec")
        return short.replace("~", " vs ")

    head = "| suite | model | " + " | ".join(short(p) for p in pairs) + " |"
    return [
        "Direction at one chunk by pair of action sequences (`rec`: the recorded actions, "
        "`rec+0.1`: plus Gaussian noise 0.1; in brackets the mean real feature distance between "
        "the pair's outcomes):",
        "",
        head,
        "|---|---" + "|---" * len(pairs) + "|",
        *rows,
        "",
    ]


def rla_decoder_target() -> str:
    d = _load("rla_decoder_target.json")
    if d is None:
        return "_not run yet: `python benchmarks/rla_decoder_target.py`_"
    out = [
        "| decoder target | val L1 | val MSE | copy-last L1 | L1 / copy | steps | train time |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in d["runs"].items():
        f, m = r["final"], r["meta"]
        kept = " (kept)" if name == d["kept"] else ""
        out.append(
            f"| {name}{kept} | {f['val/l1']:.4f} | {f['val/mse']:.5f} | "
            f"{f['val/copy_l1']:.4f} | {f['val/l1_vs_copy']:.3f} | {f['step']} | "
            f"{m['wall_clock_s'] / 60:.1f} min |"
        )
    n_train = d["runs"][d["kept"]]["meta"]["train_episodes"]
    n_val = d["runs"][d["kept"]]["meta"]["val_episodes"]
    return "\n".join([*out, "", f"{n_train} train / {n_val} held-out episodes. " + _stamp(d)])


def dream_speed() -> str:
    d = _load("dream_speed.json")
    if d is None:
        return "_not run yet: `python benchmarks/dream_speed.py`_"
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


def reacher_observation() -> str:
    d = _load("reacher_observation.json")
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
    return "\n".join([*out, "", extra + " " + _stamp(d)])


def reward_samples() -> str:
    d = _load("reward_samples.json")
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
                    f"{r['noise_std']:.2g} ({_opt(r['noise_vs_r1'], '.2f')})",
                    _opt(r["noise_to_signal"], ".2f"),
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
    return "\n".join([*out, "", extra + _stamp(d)])


def _rate(r: dict) -> str:
    lo, hi = r["wilson95"]
    return (
        f"{r['successes']}/{r['episodes']} ({100 * r['success_rate']:.0f} %) "
        f"[{100 * lo:.0f}, {100 * hi:.0f}] %"
    )


def _wilson(k: int, n: int, lo: float, hi: float) -> str:
    return f"{k}/{n} ({100 * k / max(n, 1):.0f} %) [{100 * lo:.0f}, {100 * hi:.0f}] %"


def _bundles(d: dict, rows: str) -> tuple[str, str]:
    """An rl_in_dream result's notes on its bundle: ``" Bundle built <date>."`` and the rows
    (``rows``: ``"arms"`` or ``"policies"``) it keeps under ``superseded`` for earlier bundles."""
    built = d.get("bundle_created_utc")
    on = f" Bundle built {built[:10]}." if built else ""
    earlier = [
        f"built {b[:10]}: "
        + ", ".join(f"{k} {r['success']}/{r['episodes']}" for k, r in old[rows].items())
        for b, old in d.get("superseded", {}).items()
    ]
    return on, f" On the earlier bundle ({'; '.join(earlier)})." if earlier else ""


def _planner_search(planner: dict) -> str:
    """How a planner row searched: from scratch or around the base, and how far ahead."""
    res, h = planner["residual_scale"], planner.get("horizon", 2)
    how = "from scratch" if res == 0 else f"residual {res:g} around the base"
    return how + ("" if h == 2 else f", {h} chunks ahead")  # 2: PlannerConfig's default


def _reward_mode(row: dict) -> str:
    """A dream or planner row's reward; rows from before the option ran the env's default.

    A row run on another bundle (``artifacts``) names it, by the reward-ranking head whose copy
    of the bundle it is when there is one."""
    mode = row.get("reward_mode", "aligned")
    path = row.get("artifacts")
    if path is None:
        return mode
    ranking = (_load("reward_ranking.json") or {}).get("suites", {})
    head = next((n for e in ranking.values() for n, src in e.get("sources", {}).items()
                 if src == path), None)  # fmt: skip
    return f"{mode} ({head} head)" if head else f"{mode} (bundle `{path}`)"


def rl_in_dream_reacher() -> str:
    d = _load("rl_in_dream_reacher.json")
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
        how = f", {_planner_search(r['planner'])}" if "planner" in r else ""
        kind = k.split(" ")[0]
        if kind in ("planner", "dream", "bc+ppo"):
            names[k] = kinds[kind] + how
        elif kind == "planner-wm" and r.get("world_model"):
            names[k] = f"the planner dreaming with `{r['world_model']}`{how}"
        if kind in ("planner", "planner-wm", "dream", "bc+ppo"):
            names[k] += f"; {_reward_mode(r)} reward"
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
            f"| {_wilson(r['success'], r['episodes'], *r['wilson95'])} | "
            f"{r['return']:.2f} | {r['mean_decision_s']:.2f} |"
        )
    arms, t = d["arms"], d["targets"]
    rate = {k: r["success"] / r["episodes"] for k, r in arms.items()}

    def best(kinds: tuple[str, ...]) -> str | None:
        found = [k for k in rate if k.split(" ")[0] in kinds]
        return max(found, key=lambda k: rate[k]) if found else None

    verdicts = []
    if dream := best(("dream",)):
        ok = rate[dream] >= t["dream_success_min"] and rate[dream] > rate.get("real", 1)
        verdicts.append(
            f"best dream-trained PPO (`{dream}`) {100 * rate[dream]:.0f} % (target ≥ "
            f"{100 * t['dream_success_min']:.0f} % and above the real-trained arm's "
            f"{100 * rate.get('real', float('nan')):.0f} %): "
            f"{'met' if ok else 'missed'}"
        )
    if (residual := best(("bc+ppo",))) and "bc" in arms:
        mine = arms[residual]["per_episode_success"]
        base = arms["bc"]["per_episode_success"][: len(mine)]  # the same seeds
        pairs = list(zip(mine, base, strict=True))
        verdicts.append(
            f"best residual PPO on the base (`{residual}`) {arms[residual]['success']}/"
            f"{arms[residual]['episodes']} against the base's {sum(base)} on the same seeds "
            f"({sum(a and not b for a, b in pairs)} wins, {sum(b and not a for a, b in pairs)} "
            "losses; the base's success, not counted as learned in the dream)"
        )
    if planner := best(("planner", "planner-wm")):
        ok = rate[planner] >= t["planner_success_min"]
        verdicts.append(
            f"best planner (`{planner}`) {100 * rate[planner]:.0f} % (target ≥ "
            f"{100 * t['planner_success_min']:.0f} %): {'met' if ok else 'missed'}"
        )
    a, b = d["eval_seeds"]
    c = d["config"]
    extra = (
        f"{d['task']}, real seeds {a}..{b} for every arm, {d['horizon_chunks']} chunks of "
        f"{d['chunk']} control steps (the bundle's horizon), success = the finger touches "
        f"the target; PPO action mode `{c['action_mode']}`, "
        f"{c['budget_min']:g} CPU-minutes per PPO arm."
        + "".join(f" {v[0].upper()}{v[1:]}." for v in ["; ".join(verdicts)] if v)
    )
    on, earlier = _bundles(d, "arms")
    return "\n".join([*out, "", extra + on + earlier + " " + _stamp(d)])


def planner_oracle() -> str:
    d = _load("planner_oracle.json")
    if d is None or not d.get("arms"):
        return "_not run yet: `python benchmarks/planner_oracle.py`_"
    dream = _load("rl_in_dream_reacher.json") or {}
    same = dream.get("bundle_created_utc") == d["bundle_created_utc"]
    n = min(r["episodes"] for r in d["arms"].values())  # every row also on these seeds
    out = [
        "| model the planner searches in | reward it maximises | search | real success "
        f"(Wilson 95 %) | on the first {n} seeds | s / decision |",
        "|---|---|---|---|---|---|",
    ]

    def search(r: dict) -> str:
        if "planner" not in r:
            return "none: the base (BC + RLA head) alone"
        return _planner_search(r["planner"])

    rows = [("real simulator (oracle)", r["scorer"], r) for r in d["arms"].values()]
    for k, r in (dream.get("arms", {}) if same else {}).items():
        kind = k.split(" ")[0]  # the dreams' rows of rl_in_dream_reacher, for comparison
        if kind == "planner":
            rows.append(("the bundle's dream", _reward_mode(r), r))  # a copy's: same dream
        elif kind == "planner-wm":
            model = f"the dream of `{Path(r['world_model']).parent.name}`"
            rows.append((model, _reward_mode(r), r))
    rows.sort(key=lambda x: (x[2]["planner"]["residual_scale"], x[0]))
    if same and "bc" in dream.get("arms", {}):
        rows.append(("-", "-", dream["arms"]["bc"]))
    for model, reward, r in rows:
        out.append(
            f"| {model} | {reward} | {search(r)} | "
            f"{_wilson(r['success'], r['episodes'], *r['wilson95'])} | "
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
    return "\n".join([*out, "", extra + " " + _stamp(d)])


def reward_ranking() -> str:
    d = _load("reward_ranking.json")
    if d is None or not d.get("suites"):
        return "_not run yet: `python benchmarks/reward_ranking.py`_"
    what = {
        "bundle": "the bundle's",
        "distance-supervised": "distance-supervised head (the true distance as its label)",
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
            elif name == "distance-supervised":  # its label is the distance, whatever its config
                head = what[name]
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
                "across frames."
            )
    notes.append(
        "The task's order (simulator state): reacher, touching the target during the chunk, "
        "then the finger-to-target distance at its end; Lift, solving during the chunk, then the "
        "cube's rise, then the gripper-to-cube distance."
    )
    return "\n".join([*out, "", " ".join(notes) + " " + _stamp(d)])


def rl_in_dream_manip(short: str) -> str:
    d = _load(f"rl_in_dream_{short}.json")
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
        "| policy | what | real success (Wilson 95 %) | base on the same episodes | per seed |",
        "|---|---|---|---|---|",
    ]
    for k, r in d["policies"].items():
        seeds = (
            ", ".join(f"{s['seed']}: {s['success']}/{s['episodes']}" for s in r.get("per_seed", []))
            or "-"
        )
        same = f"{r['base_same_episodes']}/{r['episodes']}" if "base_same_episodes" in r else "-"
        what = names.get(k, k)
        if k.split(" ")[0] == "planner":
            what = f"{names['planner']}; {_reward_mode(r)} reward"
        out.append(
            f"| {k} | {what} | "
            f"{_wilson(r['success'], r['episodes'], *r['wilson95'])} | {same} | {seeds} |"
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
    on, note = _bundles(d, "policies")
    return "\n".join([*out, "", f"{d['task']}; {d['protocol']}.{on} {verdict}{note} {_stamp(d)}"])


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


def bundles() -> str:
    assets = Path(__file__).parents[1] / "rla_gym" / "envs" / "assets"
    from rla_gym.envs import SUITE_IDS

    out = [
        "| id | real task | horizon (chunks) | size | WM val L1 (copy-last) | success estimate "
        "on dreamed replays (on real frames): train bal. acc. / held-out agreement | "
        "progress head (the env's success estimate): held-out AUC / start false positives | "
        "reset starts / reference demos | train-rla | "
        "train-wm | train-bc |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
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

        def mins(part: str, tr: dict = tr) -> str:
            return f"{tr[part]['wall_clock_s'] / 60:.1f} min, {tr[part]['step']}"

        out.append(
            f"| `{env_id}` | {m['sim']} {m['task']} | {m['max_episode_steps']} | "
            f"{m['total_bytes'] / 1e6:.1f} MB | "
            f"{v['val/pred_l1']:.4f} ({v['val/copy_l1']:.4f}) | "
            f"{su['train_balanced_accuracy']:.2f} / {su['heldout_agreement']:.2f} "
            f"({_real_cal(su)}; {su['heldout_episodes']} held-out ep.) | {_head(m)} | "
            f"{len(m['reset']['episodes'])} / "
            f"{len(m['reference']['episodes'])} | {mins('rla')} steps | {mins('world_model')} "
            f"steps | {tr['policy']['wall_clock_s'] / 60:.1f} min |"
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


DVR_SUITES = ("libero", "robosuite-lift", "dmc-reacher")


def _rho(x: float | None) -> str:
    return _opt(x, ".2f")


def _rho_ci(x: float | None, ci: list[float] | None) -> str:
    return _rho(x) if ci is None else f"{_rho(x)} [{ci[0]:.2f}, {ci[1]:.2f}]"


def dream_vs_real() -> str:
    runs = {s: d for s in DVR_SUITES if (d := _load(f"dream_vs_real_{s}.json")) is not None}
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
                f"| {n} | {_rate(re)} | {_rate(p['imagined'])} | "
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
                f"| {suite} | {label} | {_rho_ci(rho, st['spearman_return_ci95'])} | "
                f"{_rho(st['spearman_return_scripted'])} | "
                f"{_rho(st['spearman_return_closed_loop'])} | "
                f"{_rho_ci(st['spearman_success'], st['spearman_success_ci95'])} | "
                f"{_rho(st['spearman_return_vs_real_success'])} | "
                f"{_rho(st['spearman_episode_return'])} | "
                f"{_rho(st['spearman_return_within_start'])} | {verdict} |"
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
    return "\n".join([*out, "", extra + _stamp(d0), "", f"Plots: {plots}."])


def world_action_model() -> str:
    d = _load("world_action_model.json")
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
    return "\n".join([*out, "", extra + _stamp(d)])


def faithfulness_levers() -> str:
    d = _load("faithfulness_levers.json")
    if d is None or not d.get("suites"):
        return "_not run yet: `python benchmarks/faithfulness_levers.py`_"
    out = [
        "| suite | row (lever) | direction (1 chunk) | magnitude ratio | ranking Spearman | "
        "L1 / copy-last (4 chunks) | RLA ceiling direction | trained |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    rla = [
        "| suite | autoencoder (lever) | ceiling direction | ceiling magnitude ratio | "
        "ceiling ranking Spearman | held-out L1 / copy-last | trained |",
        "|---|---|---|---|---|---|---|",
    ]
    for suite, e in d["suites"].items():
        # The dataset most rows trained on; a row on another one names it.
        datas = [r["training"].get("data") for r in e["rows"].values() if r.get("training")]
        data = max(set(datas) - {None}, key=datas.count, default=e["run"]["data"])
        for name, r in e["rows"].items():
            if "1" not in r:  # an autoencoder row: only its ceiling is scored
                c, tr = r["rla_ceiling"], r["training"]
                how = (
                    f"not trained: PCA of {tr['pairs']} training residuals"
                    if r["options"].get("pca_only")
                    else f"{tr['steps']} steps, "
                    f"{(tr.get('train_wall_clock_s') or tr['this_call_s']) / 60:.0f} min"
                )
                rla.append(
                    f"| {suite} | {name} | {c['direction']:.3f} | "
                    f"{c['magnitude_ratio']:.3f} | {c['ranking_spearman']:.2f} | "
                    f"{_opt(tr.get('val_metrics', {}).get('val/l1_vs_copy'))} | {how} |"
                )
                continue
            h1, h4, ceil = r["1"], r.get("4"), r.get("rla_ceiling")
            tr = r.get("training")
            trained = (
                f"bundle built {r.get('bundle_created_utc', '?')[:10]}"
                if tr is None
                else f"{tr['steps']} steps, {(tr.get('train_wall_clock_s') or 0) / 60:.0f} min"
                + ("" if tr.get("data", data) == data else f", on `{tr['data']}`")
            )
            rel = "-" if h4 is None else f"{h4['l1'] / h4['copy_last_l1']:.2f}"
            out.append(
                f"| {suite} | {name} | {h1['direction']:.3f} | "
                f"{h1['magnitude_ratio']:.3f} | {h1['ranking_spearman']:.2f} | {rel} | "
                f"{'-' if ceil is None else format(ceil['direction'], '.2f')} | "
                f"{trained} |"
            )
        run = e["run"]
        dropout = any(n.startswith("rla-wm+dropout") for n in e["rows"])
        notes.append(
            f"{suite}: {run['starts']} restored real starts (cached), data "
            f"`{data}` unless a row names another, trained rows' steps and wall-clock in their "
            "last column" + (f", action dropout {run['dropout']}" if dropout else "")
        )
    if len(rla) > 2:
        out += [
            "",
            "The autoencoder alone, retrained with the bundle's RLA sizes on the same data "
            "(`cw` = `RLAConfig.change_weight`, 0 is the paper's uniform loss; `r` = "
            "`RLAConfig.linear_rank`, a linear path initialised to the residuals' principal "
            "components; `pca r` = that linear code alone, untrained), scored by its ceiling "
            "on the same starts:",
            "",
            *rla,
        ]
    return "\n".join([*out, "", "; ".join(notes) + ". " + _stamp(d)])


def success_estimate() -> str:
    d = _load("success_estimate.json")
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
        [*out, "", "Targets: AUC ≥ 0.9, ≤ 10 % false positives at start states. " + _stamp(d)]
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


def decoder() -> str:
    d = _load("decoder.json")
    if d is None:
        return "_not run yet: `python benchmarks/decoder.py`_"
    suites = [k for k in d if k != "provenance"]
    hs = sorted(d[suites[0]]["psnr_imagined"], key=int)
    target = d["provenance"].get("target_psnr_real_db", 20.0)

    def db(x: float | None) -> str:
        return _opt(x, ".1f")

    def per_h(r: dict, key: str) -> str:
        return " / ".join(db(r[key][h]) for h in hs)

    out = [
        "| suite | decoder (int8) | training | PSNR held-out real | PSNR imagined @ "
        + " / ".join(hs)
        + " chunks | decoder on the real features of those frames | "
        "decoded start frame (nothing moves) | nearest-frame render: real; imagined | "
        "foreground L1 on real: decoder / nearest | "
        f"target ≥ {target:.0f} dB on real |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in suites:
        r = d[s]
        dec = r["decoder"]
        met = "met" if r["psnr_real"] >= target else "missed"
        out.append(
            f"| {s} | {r['decoder_mb']:.2f} MB, {dec['parameters'] / 1e6:.2f} M params | "
            f"{dec['training_steps']} steps, {dec['wall_clock_s'] / 60:.1f} min, "
            f"{r['train_frames']} frames | {r['psnr_real']:.1f} ({r['frames_real']} frames) | "
            f"{per_h(r, 'psnr_imagined')} ({' / '.join(str(r['starts'][h]) for h in hs)} "
            f"starts) | {per_h(r, 'psnr_real_at_horizon')} | {per_h(r, 'psnr_copy_start')} | "
            f"{r['psnr_nearest_real']:.1f}; {per_h(r, 'psnr_nearest_imagined')} | "
            f"{r['foreground_l1_real']:.3f} / {r['foreground_l1_nearest_real']:.3f} "
            f"({100 * r['foreground_fraction']:.0f} % of pixels) | {met} |"
        )
    p = d["provenance"]
    eps = ", ".join(f"{s} {len(d[s]['heldout_episodes'])}" for s in suites)
    extra = (
        f"PSNR in dB (mean over frames) of the int8 decoder shipped in each bundle, on the "
        f"held-out episodes of its training split plus fresh test episodes of another "
        f"collection seed, seen by neither the decoder nor the world model ({eps} "
        f"episodes); imagined: the bundle's world model "
        f"dreams from a real frame with the episode's real actions ({p['flow_steps']} Euler "
        f"steps, chunks of {d[suites[0]]['chunk']} control steps) and the decoded dream is "
        f"compared with the real frame those actions led to. Foreground: pixels more than "
        f"0.1 (mean RGB) away from the held-out frames' median, i.e. the moving robot and "
        f"objects, which whole-frame PSNR hardly weighs. "
    )
    return "\n".join([*out, "", extra + _stamp(d)])


def branch_fit() -> str:
    d = _load("branch_fit.json")
    if d is None or not d.get("models"):
        return "_not run yet: `python benchmarks/branch_fit.py`_"
    out = [
        "| model | direction | magnitude ratio | RLA ceiling direction |",
        "|---|---|---|---|",
    ]
    for name, m in d["models"].items():
        out.append(
            f"| {name} | {m['direction']:.3f} | {m['magnitude_ratio']:.3f} | "
            f"{m['rla_ceiling']['direction']:.3f} |"
        )
    pairs = next(iter(d["models"].values()))["pairs"]
    note = (
        f"{d['points']} branch points of `{d['data']}` whose branches are all in the trainers' "
        f"training split ({pairs} sibling pairs); one dreamed chunk from the shared real start "
        "per branch, flow noise shared within a point. "
    )
    return "\n".join([*out, "", note + _stamp(d)])


BLOCKS = {
    "branch_fit": branch_fit,
    "planner_real": planner_real,
    "faithfulness_levers": faithfulness_levers,
    "success_estimate": success_estimate,
    "bundles": bundles,
    "dream_vs_real": dream_vs_real,
    "sim_throughput": sim_throughput,
    "encoder_throughput": encoder_throughput,
    "expert_success": expert_success,
    "fidelity": fidelity,
    "counterfactual": counterfactual,
    "rla_decoder_target": rla_decoder_target,
    "dream_speed": dream_speed,
    "reward_samples": reward_samples,
    "reacher_observation": reacher_observation,
    "rl_in_dream_reacher": rl_in_dream_reacher,
    "planner_oracle": planner_oracle,
    "reward_ranking": reward_ranking,
    "rl_in_dream_lift": lambda: rl_in_dream_manip("lift"),
    "rl_in_dream_libero": lambda: rl_in_dream_manip("libero"),
    "world_action_model": world_action_model,
    "decoder": decoder,
}


def main() -> None:
    rendered = {k: f() for k, f in BLOCKS.items()}
    if "--print" in sys.argv:
        for k, v in rendered.items():
            print(f"## {k}\n\n{v}\n")
        return
    text = README.read_text()
    for k, v in rendered.items():
        pat = re.compile(rf"(<!-- BENCH:{k} -->\n).*?(\n<!-- /BENCH:{k} -->)", re.S)
        text = pat.sub(lambda m, v=v: m.group(1) + v + m.group(2), text)
    README.write_text(text)


if __name__ == "__main__":
    main()
