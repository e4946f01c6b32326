"""Does the dream rank policies as reality does? Imagined vs real return and success, per suite.

Policies of graded quality: uniform random, the scripted expert with action noise at three scales,
the clean expert (scripted policies act in the real simulator; their recorded actions are replayed
in the dream) and the bundle's behaviour-cloned policy (closed loop in both worlds), plus any saved
policies passed with ``--policies`` or listed in a WMRL run's ``report.json``. Each runs the
bundle's horizon from the same real starts (LIBERO init states / seeds); the dream starts from the
encoded real first frame. Both worlds' features are scored with every reward mode, so returns are
in the same units; see :mod:`rla_gym.evaluation.dream_vs_real`.

Writes ``benchmarks/results/dream_vs_real_<suite>.json`` (top level: the chosen reward mode's
``policies``, ``spearman_return``, ``spearman_success``, ``reward_mode``; every mode under
``modes``) and a plot beside it. Real episodes are cached in ``runs/dream_vs_real/<suite>/``, so an
interrupted run resumes.

    python benchmarks/dream_vs_real.py --suite dmc-reacher --starts 20
    python benchmarks/dream_vs_real.py --suite libero --wmrl-run runs/wmrl   # + PPO snapshots
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from rla_gym.utils import provenance, save_json
from rla_gym.utils.io import load_json

# Noise scales whose real success within the bundle's horizon is graded between random and the
# clean expert (measured on starts 0..19 / 0..9 with run_scripted_episode): LIBERO's 136 control
# steps leave the expert little slack, so noise 0.3 already fails everywhere (0/10) while 0.2,
# 0.15 and 0.1 give 1/10, 3/10 and 7/10; Lift (56 steps): 0.6, 0.3, 0.1 give 1/20, 3/20, 15/20;
# reacher (40 steps; its noisy expert fails by aiming off target): 1.0, 0.6, 0.3 give 5/20,
# 7/20, 16/20, and 0.2 already succeeds 20/20.
NOISES = {
    "libero": (0.2, 0.15, 0.1),
    "robosuite-lift": (0.6, 0.3, 0.1),
    "dmc-reacher": (1.0, 0.6, 0.3),
}


@dataclass(frozen=True)
class Args:
    suite: Literal["libero", "robosuite-lift", "dmc-reacher"] = "libero"
    """embedded bundle to dream with (its manifest names the real simulator and task)"""
    artifacts: str | None = None
    """another bundle folder instead of the suite's embedded one"""
    starts: int = 20
    """real starts 0..starts-1 (each policy runs once per start in each world)"""
    noises: tuple[float, ...] | None = None
    """action-noise scales of the noisy scripted experts (default: the suite's, see NOISES)"""
    policies: tuple[str, ...] = ()
    """extra saved policies as name=folder"""
    wmrl_run: Path | None = None
    """a WMRL output folder whose report.json lists BC / snapshot / final policies to add"""
    workers: int = 1
    """real-simulator processes"""
    flow_steps: int = 10
    """Euler steps per dreamed chunk"""
    seed: int = 0
    """seed of real resets (start i: seed + i; LIBERO: init state i) and dream noise"""
    run_dir: Path | None = None
    """real-episode cache (default: runs/dream_vs_real/<suite>)"""
    out: Path | None = None
    """result JSON (default: benchmarks/results/dream_vs_real_<suite>.json)"""


def main(args: Args) -> dict:
    import torch

    from rla_gym.envs.rla_world import resolve_artifacts
    from rla_gym.evaluation.dream_vs_real import PolicySpec, compare, graded_policies

    torch.set_num_threads(1)
    bundle = resolve_artifacts(args.artifacts, args.suite)
    specs = graded_policies(bundle, args.noises or NOISES[args.suite])
    for item in args.policies:
        name, _, path = item.partition("=")
        specs.append(PolicySpec(name, "saved", path))
    if args.wmrl_run is not None:
        for name, p in load_json(args.wmrl_run / "report.json")["policies"].items():
            if name != "bc":  # the bundle's BC is already in
                specs.append(PolicySpec(name, "saved", p["path"]))
    run_dir = args.run_dir or Path("runs/dream_vs_real") / args.suite
    out = args.out or Path(f"benchmarks/results/dream_vs_real_{args.suite}.json")
    result = compare(
        bundle,
        specs,
        num_starts=args.starts,
        workers=args.workers,
        flow_steps=args.flow_steps,
        seed=args.seed,
        cache_dir=run_dir / "real",
    )
    manifest = load_json(bundle / "manifest.json")
    mode = result["reward_mode"]
    chosen = result["modes"][mode]
    report = {
        "policies": chosen["policies"],
        "spearman_return": chosen["spearman_return"],
        "spearman_success": chosen["spearman_success"],
        "reward_mode": mode,
        "suite": args.suite,
        "bundle": str(bundle),
        "mode_rule": "the mode whose imagined return ranks the policies best by real success "
        "(Spearman), ties to Spearman(imagined, real return)",
        **result,
        "provenance": provenance(
            seed=args.seed,
            encoder=manifest["encoder_fingerprint"],
            device="cpu",
            flow_steps=args.flow_steps,
            workers=args.workers,
        ),
    }
    save_json(report, out)
    _plot(report, out.with_suffix(".png"))
    _print(report)
    return report


def _print(r: dict) -> None:
    modes = list(r["modes"])
    head = f"{'policy':<10} {'real succ':>9} {'dream succ':>10} " + " ".join(
        f"{m + ' im/re':>18}" for m in modes
    )
    print(head)
    rows = {m: {p["name"]: p for p in r["modes"][m]["policies"]} for m in modes}
    for p in r["policies"]:
        n = p["name"]
        cells = " ".join(
            f"{rows[m][n]['imagined']['mean_return']:>8.3f}/"
            f"{rows[m][n]['real']['mean_return']:<9.3f}"
            for m in modes
        )
        print(
            f"{n:<10} {p['real']['successes']:>5}/{p['real']['episodes']:<3} "
            f"{p['imagined']['successes']:>6}/{p['imagined']['episodes']:<3} {cells}"
        )
    for m in modes:
        s = r["modes"][m]
        print(
            f"{m:<9} spearman return {s['spearman_return']}, success {s['spearman_success']}, "
            f"return vs real success {s['spearman_return_vs_real_success']}, episodes "
            f"{s['spearman_episode_return']}"
        )
    print(
        f"reward mode {r['reward_mode']}; {r['real_episodes_run']} real episodes run "
        f"({r['real_wall_clock_s'] / 60:.1f} min), {r['wall_clock_s'] / 60:.1f} min in all"
    )


def _plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(r["modes"])
    fig, axes = plt.subplots(1, len(modes) + 1, figsize=(4 * (len(modes) + 1), 3.6))
    for ax, m in zip(axes, modes, strict=False):
        s = r["modes"][m]
        for i, p in enumerate(s["policies"]):  # one colour per policy in every panel
            c = f"C{i % 10}"
            ax.scatter(p["real"]["returns"], p["imagined"]["returns"], s=8, alpha=0.35, color=c)
            ax.scatter(
                [p["real"]["mean_return"]],
                [p["imagined"]["mean_return"]],
                s=90,
                marker="*",
                label=p["name"],
                color=c,
                edgecolors="k",
                linewidths=0.5,
            )
        rho = s["spearman_return"]
        ax.set(
            xlabel="real return (same reward, real features)",
            ylabel="imagined return",
            title=f"{m}: Spearman {'-' if rho is None else f'{rho:.2f}'}",
        )
    ax = axes[-1]
    for i, p in enumerate(r["policies"]):
        ax.scatter(
            p["real"]["success_rate"],
            p["imagined"]["success_rate"],
            s=50,
            label=p["name"],
            color=f"C{i % 10}",
        )
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    rho = r["spearman_success"]
    ax.set(
        xlabel="real success",
        ylabel="imagined success (estimate)",
        xlim=(-0.05, 1.05),
        ylim=(-0.05, 1.05),
        title=f"success: Spearman {'-' if rho is None else f'{rho:.2f}'}",
    )
    axes[0].legend(fontsize=7)
    fig.suptitle(f"dream vs real: {r['suite']} ({len(r['starts'])} starts)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(tyro.cli(Args))
