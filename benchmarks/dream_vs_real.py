"""Does the dream rank policies as reality does? Imagined vs real return/success, same starts.

Policies: uniform random, the privileged scripted expert (its real actions replayed in the dream),
the behaviour-cloned base and the residual-PPO policies saved along a WMRL run
(``examples/train_ppo_in_wm.py``; snapshots and final). Each runs the env's full horizon from the
same LIBERO init states in the dream and in the real simulator; real frames are scored with the
dream's own reward. Writes JSON + a scatter plot and the Spearman rank correlations.

    python examples/train_ppo_in_wm.py                 # produces runs/wmrl (policies to compare)
    python benchmarks/dream_vs_real.py --wmrl-run runs/wmrl
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro

from rla_gym.utils import provenance, save_json
from rla_gym.utils.io import load_json


@dataclass(frozen=True)
class Args:
    artifacts: str | None = None
    """bundle (default: the embedded LIBERO bundle)"""
    wmrl_run: Path = Path("runs/wmrl")
    """WMRL output folder whose report.json lists the BC / snapshot / final policies"""
    starts: int = 20
    """reset-bank starts with a known init state (each policy runs once per start per world)"""
    workers: int = 2
    """real-simulator processes"""
    flow_steps: int = 10
    """Euler steps per dreamed chunk"""
    seed: int = 0
    """seed of dream noise, random chunks and real resets"""
    out: Path = Path("benchmarks/results/dream_vs_real.json")


def main(args: Args) -> None:
    import torch

    from rla_gym.envs.rla_world import resolve_artifacts
    from rla_gym.evaluation.dream_vs_real import PolicySpec, compare

    torch.set_num_threads(1)
    bundle = resolve_artifacts(args.artifacts, "libero")
    specs = [PolicySpec("random", "random"), PolicySpec("expert", "expert")]
    report_path = args.wmrl_run / "report.json"
    if report_path.exists():
        for name, p in load_json(report_path)["policies"].items():
            specs.append(PolicySpec(name, "saved", p["path"]))
    elif (bundle / "policy").exists():
        specs.append(PolicySpec("bc", "saved", str(bundle / "policy")))
    result = compare(bundle, specs, num_starts=args.starts, workers=args.workers,
                     flow_steps=args.flow_steps, seed=args.seed)
    manifest = load_json(bundle / "manifest.json")
    result.update(bundle=str(bundle), task=manifest["task"], wmrl_run=str(args.wmrl_run),
                  provenance=provenance(seed=args.seed, encoder=manifest["encoder_fingerprint"],
                                        device="cpu", flow_steps=args.flow_steps))
    save_json(result, args.out)
    _plot(result, args.out.with_suffix(".png"))
    print(f"{'policy':<14} {'imagined ret':>12} {'real ret':>10} {'imagined succ':>14} "
          f"{'real succ':>10}")
    for name, p in result["policies"].items():
        im, re = p["imagined"], p["real"]
        print(f"{name:<14} {im['mean_return']:>12.3f} {re['mean_return']:>10.3f} "
              f"{im['successes']:>10}/{im['episodes']:<3} {re['successes']:>6}/{re['episodes']}")
    print("spearman:", result["spearman"], f"({result['wall_clock_s'] / 60:.1f} min)")


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
    for name, p in result["policies"].items():
        ax0.scatter(p["real"]["returns"], p["imagined"]["returns"], s=10, alpha=0.5)
        ax0.scatter([p["real"]["mean_return"]], [p["imagined"]["mean_return"]], s=80,
                    marker="*", label=name)
        ax1.errorbar(p["real"]["success_rate"], p["imagined"]["success_rate"], fmt="o",
                     xerr=[[p["real"]["success_rate"] - p["real"]["wilson95"][0]],
                           [p["real"]["wilson95"][1] - p["real"]["success_rate"]]],
                     yerr=[[p["imagined"]["success_rate"] - p["imagined"]["wilson95"][0]],
                           [p["imagined"]["wilson95"][1] - p["imagined"]["success_rate"]]],
                     label=name, capsize=3)
    rho = result["spearman"]
    ax0.set(xlabel="real return (same reward on real features)", ylabel="imagined return",
            title=f"returns (Spearman over policies {rho['mean_return']})")
    ax1.plot([0, 1], [0, 1], "k:", lw=1)
    ax1.set(xlabel="real success", ylabel="imagined success (estimate)", xlim=(-0.05, 1.05),
            ylim=(-0.05, 1.05), title=f"success (Spearman {rho['success_rate']})")
    ax0.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(tyro.cli(Args))
