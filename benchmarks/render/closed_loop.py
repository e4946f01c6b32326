"""Does the dream agree with reality in closed loop? (`closed_loop.py`)."""

from __future__ import annotations

import numpy as np

from rla_gym.utils import load_json

from .common import fmt_rho, fmt_wilson, load_result, stamp

SUITES = ("dmc-reacher", "robosuite-lift", "libero")


def _cell(r: dict) -> str:
    return fmt_wilson(r["success"], r["episodes"], *r["wilson95"])


def _late(r: dict, horizon: int) -> str:
    """Successes first reached after the bundle's horizon (``horizon`` chunks)."""
    first = r.get("first_success_chunk")
    return "-" if first is None else str(sum(c > horizon for c in first))


def _gap(gap: float | None, target: dict) -> str:
    if gap is None:
        return "-"
    within = target["base_gap_within_points"]
    return f"{gap:+.0f}: {'met' if abs(gap) <= within else f'missed by {abs(gap) - within:.0f}'}"


def _rho(rho: float | None, n: int, target: dict) -> str:
    least = target["spearman_min"]
    ok = n >= 6 and rho is not None and rho >= least
    return f"{fmt_rho(rho)}: {'met' if ok else f'missed by {least - (rho or 0.0):.2f}'}"


def _bundle(s: dict) -> str:
    """Which bundle dreamed, when it is not the embedded one, and whether it dreams the body."""
    body = s.get("body")
    dreams = f", dreaming the body ({body['dim']} values)" if body else ""
    if s.get("bundle", "embedded") == "embedded":
        return f"; the embedded bundle{dreams}" if body else ""
    return f"; bundle `{s['bundle']}`{dreams}"


def _pair(imagined: dict | None, real: dict | None) -> str:
    """``"k/n / k/n"``: one policy's imagined and real successes (``-`` if either is missing)."""
    if imagined is None or real is None:
        return "-"
    return (f"{imagined['success']}/{imagined['episodes']} / "
            f"{real['success']}/{real['episodes']}")  # fmt: skip


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _auto_estimate(suite: str) -> str:
    """The estimate ``success_estimate="auto"`` reads on the suite's embedded bundle."""
    from rla_gym.envs.artifacts import load_artifacts
    from rla_gym.envs.core import auto_success_estimate
    from rla_gym.envs.rla_world import resolve_artifacts

    return auto_success_estimate(load_artifacts(resolve_artifacts(None, suite)))


def closed_loop(result: str = "closed_loop.json") -> str:
    """The tables of ``result`` (``closed_loop_body.json``: the same protocol on bundles whose
    world model dreams the robot's body)."""
    d = load_result(result)
    if d is None:
        return f"_not run yet: `python benchmarks/closed_loop.py` (→ {result})_"
    runs = {s: d["suites"][s] for s in SUITES if s in d["suites"]}
    out: list[str] = []
    for suite, s in runs.items():
        others = s.get("other_estimates", {})
        horizon = s.get("bundle_chunks", 0)
        late = f"first success after chunk {horizon}, imagined / real"
        head = ["policy", "real success", "imagined success", "gap (points)",
                "same outcome per episode", late, "imagined return"]  # fmt: skip
        out += [
            f"**{suite}** ({s['sim']} {s['task']}; {s['control_steps']} control steps = "
            f"{s['chunks']} dreamed chunks of {s['chunk']}; the bundle's horizon: {horizon}"
            f"{_bundle(s)})",
            "",
            _row(head + [f"imagined success, {e} estimate" for e in others]),
            "|---|---|---|---|---|---|---|" + "---|" * len(others),
        ]
        for name, p in s["policies"].items():
            label = f"{name} (open loop, reference)" if p["kind"] != "closed-loop" else name
            out.append(_row([
                label, _cell(p["real"]), _cell(p["imagined"]), f"{p['gap_points']:+.0f}",
                f"{100 * p['episode_agreement']:.0f} %",
                f"{_late(p['imagined'], horizon)} / {_late(p['real'], horizon)}",
                f"{p['imagined']['return']:.2f}",
                # "-": a run under way has not read this policy with that estimate yet.
                *(_cell(o["imagined"][name]) if name in o["imagined"] else "-"
                  for o in others.values()),
            ]))  # fmt: skip
        if s.get("note"):
            out += ["", f"_Note: {s['note']}_"]
        out.append("")
    out += [
        "| suite | success estimate | base gap, imagined − real (target within ±15 points) | "
        "Spearman(imagined, real success) over the closed-loop policies (target ≥ 0.8) | "
        "Spearman(imagined return, real success) | wall time |",
        "|---|---|---|---|---|---|",
    ]
    for suite, s in runs.items():
        n, tg = s["closed_loop_policies"], s["targets"]
        # A run records what "auto" reads on its bundle; older runs were all on the embedded one.
        default = s.get("auto_estimate") or _auto_estimate(suite)

        main = _main_estimate(s)

        def name(est: str, default: str = default) -> str:
            return f"**{est}** (the env's default here)" if est == default else est

        out.append(
            f"| {suite} | {name(main)} | "
            f"{_gap(s['base_gap_points'], tg)} | {_rho(s['spearman_success'], n, tg)} | "
            f"{fmt_rho(s['spearman_return_vs_real_success'])} | {s['wall_s'] / 60:.0f} min |"
        )
        for est, o in s.get("other_estimates", {}).items():
            if est == main:
                continue  # the same dreams read the same way: the row above
            out.append(
                f"| {suite} | {name(est)} | {_gap(o['base_gap_points'], tg)} | "
                f"{_rho(o['spearman_success'], n, tg)} | - | - |"
            )
    p0 = d["provenance"]
    out += [
        "",
        "Closed-loop policies: the bundle's base; the base with Gaussian noise of std 0.1 / 0.3 "
        "/ 0.6 (normalised actions, then clipped); the base deciding every other chunk and "
        "repeating its chunk in between; the base with a uniform random chunk instead of its "
        "own with probability 0.5; uniform random chunks; where listed, plain BC (`rla-gym "
        "train-bc`, no RLA head, 2000 steps, seed 0) on all, 20 and 5 labelled expert episodes "
        "(`--policies`), policies of graded competence rather than perturbed. Real: LIBERO init "
        "states 0..n-1, "
        f"seeds {p0['seed']}+i elsewhere, stopping at the first successful control step (a "
        "start already solved counts, at chunk 0). Imagined: the dreamed env from the encoded "
        "first frame of real episode i (reward aligned to the nearest demo) for as many "
        "control steps, success = the env's `is_success_estimate` after any chunk "
        "(`progress_head`: the bundle's head; `goal_distance`: L1 to the aligned demo's goal "
        "under the bundle's threshold). Noise and random chunks are drawn per episode from the "
        "same seed in both worlds. The expert row replays its real actions open loop and is not "
        "in the Spearman. Wall time: the last run's, real episodes plus dreaming, one "
        "simulator process sharing two cores with other jobs; real episodes found in the logs "
        "of an earlier run are not run again. " + stamp(d),
    ]
    return "\n".join(out)


def _main_estimate(s: dict) -> str:
    """The estimate a suite run reports first: what its ``--success-estimate`` read on its
    bundle (``auto`` resolved; older runs name the option only)."""
    return s.get("estimate_read") or s.get("success_estimate", "auto")


def _estimates(s: dict) -> dict[str, dict[str, dict]]:
    """``{estimate: {policy: imagined rate entry}}`` of one suite run: its main estimate and every
    one of ``other_estimates``, on the same dreams."""
    main = _main_estimate(s)
    out = {main: {k: p["imagined"] for k, p in s["policies"].items()}}
    for est, o in s.get("other_estimates", {}).items():
        out.setdefault(est, o["imagined"])
    return out


def _agreement(s: dict, est: str) -> tuple[float | None, float | None]:
    """The Spearman and the base's gap a suite run recorded for estimate ``est``
    (``closed_loop.py``'s ``agreement``): its own estimate's, or one of ``other_estimates``."""
    if est == _main_estimate(s):
        return s["spearman_success"], s["base_gap_points"]
    o = s["other_estimates"][est]
    return o["spearman_success"], o["base_gap_points"]


SOURCES = ("closed_loop.json", "closed_loop_features.json", "closed_loop_body.json")
"""Result files of the closed-loop comparison, the shipped bundles' first."""


def closed_loop_compare() -> str:
    """The closed-loop agreement of the shipped bundles (``closed_loop.json``) beside a dream
    of the other kind per suite, per success estimate, on the same real episodes: bundles that
    dream the body (``closed_loop_body.json``) and, where the shipped bundle dreams the body,
    the features-only bundle it replaced (``closed_loop_features.json``). Rows are labelled by
    what each run's dream carries (its recorded ``body``)."""
    files = {name: load_result(name) or {} for name in SOURCES}
    body, shipped = files["closed_loop_body.json"], files["closed_loop.json"]
    # A body bundle whose base reads the body too (``closed_loop_body_base.json``), where run.
    reads = load_result("closed_loop_body_base.json") or {}
    if not body or not shipped:
        return "_not run yet: `python benchmarks/closed_loop.py --bundles ... --out <body>`_"
    out = [
        "| suite | success estimate | dream | base imagined / real | base gap (±15) | "
        "Spearman over the closed-loop policies (≥ 0.8) | same outcome per episode | "
        "base+noise0.3 imagined / real |",
        "|---|---|---|---|---|---|---|---|",
    ]
    n_loop: set[int] = set()
    names: dict[str, str | None] = {}
    for suite in SUITES:
        runs: dict[str, dict] = {}
        for name, result in files.items():
            s = result.get("suites", {}).get(suite)
            kind = "with the body" if s and s.get("body") else "features only"
            if s is None or any(k.startswith(kind) for k in runs):
                continue  # the first file with a dream of this kind gives its row
            runs[kind + (" (shipped)" if name == "closed_loop.json" else "")] = s
            if name != "closed_loop.json":
                names[f"{suite}, {kind}"] = s.get("bundle")
        if len(runs) < 2:
            continue
        runs = dict(sorted(runs.items(), key=lambda kv: kv[0].startswith("with")))
        if suite in reads.get("suites", {}):
            runs["with the body, a base that reads it"] = reads["suites"][suite]
            names[f"{suite}, base reads the body"] = reads["suites"][suite].get("bundle")
        ests = [e for e in ("progress_head", "goal_distance") if all(
            e in _estimates(r) for r in runs.values())]  # fmt: skip
        for est in ests:
            for dream, s in runs.items():
                im, real = _estimates(s)[est], {k: p["real"] for k, p in s["policies"].items()}
                # (a run still under way has not read every policy with every estimate yet)
                loop = [k for k, p in s["policies"].items()
                        if p["kind"] == "closed-loop" and k in im]  # fmt: skip
                agree = [
                    np.mean(np.equal(im[k]["per_episode_success"], real[k]["per_episode_success"]))
                    for k in loop
                ]
                rho, gap = _agreement(s, est)
                n_loop.add(len(loop))
                noisy = im.get("base+noise0.3"), real.get("base+noise0.3")
                out.append(_row([
                    suite, est, dream,
                    _pair(im.get("base"), real.get("base")),
                    _gap(gap, s["targets"]), _rho(rho, len(loop), s["targets"]),
                    f"{100 * float(np.mean(agree)):.0f} %",
                    _pair(*noisy),
                ]))  # fmt: skip
    out += [
        "",
        "_The same real episodes in the first two rows of a suite (they depend on the base "
        "policy, which both bundles ship byte for byte); `(shipped)`: the embedded bundle "
        "(`closed_loop.json`); a third row has a base of its "
        "own that reads the body (plain BC with the body, `body_policy.py`), shown the dreamed "
        "body in the dream and the real one in reality, and so real episodes of its own for "
        "the base and its perturbations; the dreams start from the same encoded first frames, the "
        "body dream also from the real start's body. `progress_head`: the bundle's head (reacher's "
        "body bundle: the goal-body head); `goal_distance`: L1 to the aligned demo's goal under "
        "the bundle's threshold, calibrated on its own dreamed replays. Same outcome per "
        f"episode: the mean over the closed-loop policies ({' or '.join(map(str, sorted(n_loop)))} "
        f"per suite). Other bundles: {names}._",
        "",
        stamp(body),
    ]
    return "\n".join(out)


VARIANTS = (
    ("closed_loop_last_chunk_threshold.json", "until 2026-12-07: threshold from the last chunk"),
    ("closed_loop_recalibrated.json", "threshold from the closest approach"),
    ("closed_loop_onpolicy_control.json", "+ 2000 steps on its own data (control)"),
    ("closed_loop_onpolicy.json", "+ 2000 steps on its data and the base's perturbed episodes"),
    ("closed_loop_body_head.json", "the body dream, a head that reads the body"),
)
"""Lift and LIBERO dreams run through the same closed-loop protocol (result file, label)."""


def closed_loop_variants() -> str:
    """Per suite and dream, per success estimate: the base's agreement, the Spearman, the mean
    gap over the closed-loop policies and how many imagined successes came at the first chunk
    (no real one does on Lift or LIBERO: the tasks take five chunks or more)."""
    out = [
        "| suite | dream | success estimate | base imagined / real | base gap (±15) | "
        "Spearman (≥ 0.8) | mean gap over the policies (points) | base+noise0.3 imagined / "
        "real | imagined successes at chunk 1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    embedded = {suite: _embedded_created(suite) for suite in ("robosuite-lift", "libero")}
    for suite in ("robosuite-lift", "libero"):
        for name, label in VARIANTS:
            s = (load_result(name) or {}).get("suites", {}).get(suite)
            if s is None:
                continue
            real = {k: p["real"] for k, p in s["policies"].items()}
            for est, im in _estimates(s).items():
                loop = [k for k, p in s["policies"].items()
                        if p["kind"] == "closed-loop" and k in im]  # fmt: skip
                if "base" not in loop:
                    continue
                gaps = [abs(im[k]["success"] / im[k]["episodes"]
                            - real[k]["success"] / real[k]["episodes"]) for k in loop]  # fmt: skip
                firsts = [c for k in loop for c in im[k].get("first_success_chunk", []) if c > 0]
                rho, gap = _agreement(s, est)
                noisy = im.get("base+noise0.3"), real.get("base+noise0.3")
                auto = " (the env's)" if est == s.get("estimate_read") else ""
                shipped = " **(shipped)**" if s.get("bundle_created_utc") == embedded[suite] else ""
                out.append(_row([
                    suite, label + shipped, f"`{est}`{auto}",
                    _pair(im.get("base"), real.get("base")),
                    _gap(gap, s["targets"]), _rho(rho, len(loop), s["targets"]),
                    f"{100 * float(np.mean(gaps)):.0f}",
                    _pair(*noisy),
                    f"{sum(c == 1 for c in firsts)} of {len(firsts)}",
                ]))  # fmt: skip
    out += [
        "",
        "_The same real episodes in every row of a suite (the same base policy, byte for byte); "
        "the dreams start from the same encoded first frames. Bundles: "
        + "; ".join(_variant_bundles())
        + "._",
        "",
        _libero_counterfactual(),
        "",
        stamp(load_result("closed_loop.json") or {}),
    ]
    return "\n".join(out)


def _libero_counterfactual() -> str:
    """Whether the LIBERO world model that learned from the base's episodes still follows the
    action: the counterfactual benchmark's numbers for it and for the model before it."""
    new = (load_result("counterfactual_libero_onpolicy.json") or {}).get("suites", {})
    old = (load_result("counterfactual.json") or {}).get("suites", {})
    if "libero" not in new or "libero" not in old:
        return ""
    a, b = new["libero"]["rla-wm"], old["libero"]["rla-wm"]
    return (
        "_The LIBERO world model that learned from the base's episodes on the counterfactual "
        "benchmark's held-out starts (`counterfactual_libero_onpolicy.json`): direction "
        f"{a['1']['direction']:.3f} / {a['4']['direction']:.3f} after 1 / 4 chunks, L1 "
        f"{a['1']['l1']:.4f} / {a['4']['l1']:.4f}; the model before it "
        f"{b['1']['direction']:.3f} / {b['4']['direction']:.3f}, L1 {b['1']['l1']:.4f} / "
        f"{b['4']['l1']:.4f}._"
    )


def _variant_bundles() -> list[str]:
    """``label (suite): `bundle` `` of every variant run that is not an embedded bundle."""
    out = []
    for name, label in VARIANTS:
        for suite, s in (load_result(name) or {}).get("suites", {}).items():
            if suite != "dmc-reacher" and s.get("bundle", "embedded") != "embedded":
                out.append(f"{label} ({suite}): `{s['bundle']}`")
    return out


def _embedded_created(suite: str) -> str:
    """When the suite's embedded bundle was built (a run of it records the same); its manifest
    alone, not the whole bundle."""
    from rla_gym.envs.rla_world import resolve_artifacts

    return str(load_json(resolve_artifacts(None, suite) / "manifest.json")["created_utc"])


def closed_loop_calibration() -> str:
    """Per suite: how well any goal-distance threshold, and the progress head, tell the
    closed-loop dreams of the base's recorded real episodes that succeeded in reality from those
    that failed; per perturbation, imagined against real successes."""
    d = load_result("closed_loop_calibration.json")
    if d is None or not d.get("suites"):
        return "_not run yet: `python benchmarks/closed_loop_calibration.py`_"
    out = [
        "| suite | recorded episodes (real successes) | balanced accuracy: bundle's threshold / "
        "best threshold (in-sample; chosen on half, read on the other) / progress head | "
        "per perturbation: real / imagined at the bundle's threshold / by the head |",
        "|---|---|---|---|",
    ]
    for suite, s in d["suites"].items():
        per = "; ".join(f"{name.removeprefix('cl-')} {p['real']}/{p['bundle_threshold']}/"
                        f"{p['progress_head']} of {p['episodes']}"
                        for name, p in s["perturbations"].items())  # fmt: skip
        out.append(
            f"| {suite} | {s['episodes']} ({s['real_successes']}) | "
            f"{s['bundle_threshold_accuracy']:.2f} / {s['best_threshold_accuracy']:.2f} "
            f"({s['heldout_accuracy']:.2f}) / {s['progress_head_accuracy']:.2f} | {per} |"
        )
    out += [
        "",
        "_Each recorded episode (`rla-gym record`: the base, `n02` / `n045` with action noise "
        "0.2 / 0.45, `mix03` a random chunk with probability 0.3, `every3` deciding every third "
        "chunk; seeds 100000+) dreamed closed loop with the same perturbation from its encoded "
        "first frame for the task's control-step limit; a threshold reads the smallest mean L1 of "
        "a chunk end to the aligned demo's goal. 0.5 is chance. The LIBERO world model learned "
        "from these very episodes; the Lift one did not._",
        "",
        stamp(d),
    ]
    return "\n".join(out)
