"""WMRL (paper §8): improve a behaviour-cloned policy with residual PPO inside the dream, then
check in the real simulator whether the dream was right.

Pipeline of :func:`run_wmrl`:

1. **BC init** — the bundle's behaviour-cloned base policy (``<bundle>/policy``, trained by
   ``rla-gym train-bc`` on the dataset the bundle was built from), or a fresh one from
   ``bc_data`` (:func:`rla_gym.pipelines.world_action.train_bc_from_dataset`).
2. **Residual PPO in the dream** — the base is frozen and a zero-initialised residual head adds at
   most ``residual_scale`` per action (:func:`~rla_gym.agents.make_residual_policy`); PPO trains it
   in the batched dreamed env on the video-aligned reward. Snapshots are saved along the way.
3. **Imagined evaluation** — every policy (BC, snapshots, final) is rolled out deterministically
   from every reset-bank start of the dream: imagined return and estimated success.
4. **Real evaluation** — BC and the final policy in the real simulator over its fixed init states
   (LIBERO) or seeds: real success with Wilson 95% intervals, returns, mp4s.

Everything lands in ``out/``: ``report.json``, ``curves.png``, ``bc/``, ``ppo/`` (resumable
checkpoint and snapshots) and ``videos/``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rla_gym.envs.rla_world import RewardMode
from rla_gym.errors import RLAGymError
from rla_gym.utils.io import load_json, save_json, to_jsonable
from rla_gym.utils.stats import paired_difference

__all__ = [
    "MissingPolicyError",
    "ResumeMismatchError",
    "WMRLConfig",
    "dream_evaluate",
    "format_report",
    "imagined_horizon",
    "run_wmrl",
]


class MissingPolicyError(RLAGymError, FileNotFoundError):
    """No BC base policy was found in the bundle and no dataset was given to train one."""


class ResumeMismatchError(RLAGymError, ValueError):
    """``out/ppo`` holds a run trained with other options than the ones given."""


# Options a resumed run may change: they only say how long to train or how to evaluate.
_RESUMABLE = frozenset(
    {"out", "ppo_steps", "eval_episodes", "eval_workers", "eval_max_steps", "videos",
     "real_policies", "progress", "device", "dream_eval_starts"}
)  # fmt: skip


_HEALTH = ("approx_kl", "clip_fraction", "early_stopped", "explained_variance")


def _check_resume(cfg: WMRLConfig, path: Path) -> None:
    """Record the training options beside the checkpoint, or refuse a resume that changes one."""
    options = {k: v for k, v in to_jsonable(cfg).items() if k not in _RESUMABLE}
    if not path.exists():
        save_json(options, path)
        return
    stored = load_json(path)
    # An option added after the run was stored ran at its default.
    defaults = to_jsonable(WMRLConfig())
    stored = {k: stored.get(k, defaults.get(k)) for k in options.keys() | stored.keys()}
    changed = sorted(k for k in options.keys() | stored.keys() if options.get(k) != stored.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {stored.get(k)!r} -> {options.get(k)!r}" for k in changed)
        raise ResumeMismatchError(
            f"{path.parent} was trained with other options ({diffs}); pass the same options to "
            f"resume it, or another --out to start a new run"
        )


@dataclass(frozen=True, kw_only=True)
class WMRLConfig:
    """Options of :func:`run_wmrl` (``python examples/train_ppo_in_wm.py --help``)."""

    suite: str = "libero"
    """Suite of the embedded bundle (``libero``, ``robosuite-lift``, ``dmc-reacher``)."""
    artifacts: str | None = None
    """Bundle folder (default: the suite's embedded bundle)."""
    bc_data: str | None = None
    """Train the BC base on this dataset's expert train episodes instead of using the bundle's."""
    base_policy: str | None = None
    """Improve this saved policy folder instead of the bundle's base (e.g. a plain-BC policy
    beside a bundle whose base is BC + RLA head); exclusive with ``bc_data``."""
    bc_steps: int = 2000
    """BC optimizer steps when training a base from ``bc_data``."""
    out: Path = Path("runs/wmrl")
    """Output folder (re-running resumes PPO from ``out/ppo``)."""
    ppo_steps: int = 12_288
    """Env steps (chunks of K control steps, summed over envs) of residual PPO in the dream."""
    num_envs: int = 64
    """Dreamed envs advanced by one batched world-model call (``num_envs / group_size`` starts
    per iteration)."""
    n_steps: int = 8
    """PPO rollout length per env per iteration."""
    group_size: int = 8
    """Dreamed envs per group that share a start and the flow noise; PPO's advantages are taken
    within a group (``PPOConfig.group_size``; 1 = plain PPO). Must divide ``num_envs``."""
    flow_steps: int = 5
    """Euler steps per dreamed chunk during training and imagined evaluation."""
    reset_demo_fraction: float = 0.0
    """Share of PPO's dreamed episodes that start at a random interior frame of a reference
    demo instead of a reset-bank start (paper: 0.5); the imagined evaluation always starts
    from the bank (``RLAWorldConfig.reset_demo_fraction``)."""
    reset_starts: str | None = None
    """Encoded dataset whose episodes' first frames (and bodies) replace the bundle's reset bank,
    for training and the imagined evaluation (``RLAWorldConfig.reset_starts``): reacher's bank
    holds 16 starts, which are 16 targets."""
    dream_eval_starts: int = 128
    """The imagined evaluation rolls every policy out from the first this-many starts (every
    bank start of the shipped bundles: 16 to 60)."""
    episode_chunks: int | None = None
    """Length in chunks of PPO's dreamed training episodes (paper: at most 6; default: the
    bundle's horizon); the imagined evaluation runs as many control steps as the real one
    (:func:`imagined_horizon`)."""
    reward_mode: RewardMode | None = "goal"
    """Dreamed reward PPO trains on and the imagined evaluation reports. ``goal`` (minus the L1
    distance to the reference demo's last frame) is the continuous form of the dream's success
    estimate (the goal distance, calibrated closed loop); on LIBERO the best residual change it
    finds keeps a gain under fresh flow noise, where the aligned reward's turns into a loss
    (``benchmarks/reward_signal.py``), and on ``aligned`` (the env's default) the main job
    lowered its own imagined return. ``progress`` (the bundle's head) is climbed furthest and
    exploited most: real success 3/10 against the base's 9/10 (``docs/wmrl.md``). ``None``: the
    env's default."""
    residual_scale: float = 0.1
    """Largest change the residual may make to each normalised action (paper: 0.1)."""
    learning_rate: float = 1e-4
    """PPO learning rate of the residual head and critic (paper: 1e-4). At 3e-4 a single Adam
    step of the residual head already moves the 56-dim LIBERO chunk's log-likelihood past the
    target KL; most iterations stopped early."""
    uncertainty_penalty: float = 0.0
    """PPO's dreamed reward pays minus this weight times the spread of ``uncertainty_samples``
    flow samples per step (``RLAWorldConfig.uncertainty_penalty``); the imagined evaluation
    reports the reward without it, comparable with the base's. ``0``: off."""
    uncertainty_samples: int = 2
    """Flow samples per training step whose spread the penalty charges (with a penalty only)."""
    snapshots: int = 3
    """Policies saved along training (besides BC and the final one) for imagined evaluation."""
    eval_episodes: int = 10
    """Real-simulator episodes per policy (LIBERO: init states 0..n-1); 0 skips the real
    evaluation."""
    eval_workers: int = 2
    """Real-simulator processes."""
    eval_max_steps: int | None = None
    """Control-step limit of a real episode (default: the task's)."""
    videos: int = 1
    """Real episodes per policy written as mp4."""
    real_policies: tuple[str, ...] = ("bc", "bc+ppo")
    """Which policies the real simulator evaluates (the BC result does not depend on ``seed``,
    so repeated-seed studies evaluate it once)."""
    seed: int = 0
    """Seed of PPO, dream noise and real resets."""
    device: str = "auto"
    """``auto``, ``cpu`` or ``cuda`` for PPO and the world model."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        if self.dream_eval_starts < 1:
            raise ValueError(f"--dream-eval-starts must be >= 1, got {self.dream_eval_starts}")
        if not self.uncertainty_penalty >= 0 or self.uncertainty_samples < 2:
            raise ValueError(
                f"--uncertainty-penalty must be >= 0 (got {self.uncertainty_penalty}) and "
                f"--uncertainty-samples >= 2 (got {self.uncertainty_samples})"
            )
        if self.group_size < 1 or self.num_envs % self.group_size:
            raise ValueError(
                f"--group-size {self.group_size} must divide --num-envs {self.num_envs} "
                "(envs per group of common random numbers)"
            )


# --------------------------------------------------------------------------- imagined evaluation
def imagined_horizon(manifest: dict[str, Any], real_max_steps: int | None) -> int | None:
    """Chunks of the imagined evaluation: as many control steps as the real evaluation runs
    (``real_max_steps``, else the real task's limit the bundle records), so that imagined and
    real success are counted over the same time; ``None`` (the bundle's horizon) for a bundle
    that does not record the task's limit and for dm-control, whose own limit (1000 steps) is
    no evaluation horizon."""
    steps = real_max_steps or manifest.get("task_max_steps")
    if steps is None or (real_max_steps is None and manifest.get("sim") == "dmc"):
        return None
    return max(1, math.ceil(int(steps) / int(manifest["chunk"])))


@torch.no_grad()
def dream_evaluate(
    policy: Any, venv: Any, starts: list[int] | None = None, seed: int = 0
) -> dict[str, Any]:
    """Deterministic rollouts of ``policy`` from reset-bank starts of a dreamed vector env.

    Args:
        policy: an :class:`~rla_gym.agents.ActorCritic` (``predict(obs_batch)``).
        venv: an :class:`~rla_gym.envs.RLAWorldVectorEnv` with ``num_envs == len(starts)``.
        starts: reset-bank indices (default: ``0..num_envs-1``).
        seed: seed of the flow noise (env ``i`` gets ``seed + i``).

    Returns:
        per-start ``returns``, ``success_any`` (success estimate at any step), ``success_final``
        and the means, over ``max_episode_steps`` env steps.
    """
    from rla_gym.evaluation.dream_vs_real import dream_rollouts, summarize

    starts = list(range(venv.num_envs)) if starts is None else list(starts)
    roll = dream_rollouts(venv, starts, policy=policy, seed=seed)
    success_any = roll["success"].any(1)
    return {
        "starts": starts,
        **summarize(roll["rewards"].sum(1), success_any),
        "success_any": success_any.tolist(),
        "success_final": roll["success"][:, -1].tolist(),
    }


# --------------------------------------------------------------------------- pipeline
def _bundle_path(cfg: WMRLConfig) -> Path:
    from rla_gym.envs.rla_world import resolve_artifacts

    return resolve_artifacts(cfg.artifacts, cfg.suite)


def _base_policy(cfg: WMRLConfig, bundle: Path, chunk: int) -> Path:
    if cfg.base_policy is not None:
        if cfg.bc_data is not None:
            raise ValueError("pass either base_policy or bc_data, not both")
        path = Path(cfg.base_policy)
        if not (path / "model.safetensors").exists():
            raise MissingPolicyError(f"{path} is not a saved policy folder (no model.safetensors)")
        return path
    if cfg.bc_data is not None:
        out = cfg.out / "bc"
        if not (out / "model.safetensors").exists():
            from rla_gym.pipelines.world_action import TrainBCConfig, train_bc_from_dataset

            train_bc_from_dataset(
                TrainBCConfig(
                    data=Path(cfg.bc_data),
                    out=out,
                    chunk=chunk,
                    steps=cfg.bc_steps,
                    seed=cfg.seed,
                    device=cfg.device,
                )
            )
        return out
    path = bundle / "policy"
    if not (path / "model.safetensors").exists():
        raise MissingPolicyError(
            f"bundle {bundle} has no BC base policy (policy/); pass --bc-data <dataset> to train "
            f"one, or rebuild the bundle with --policy"
        )
    return path


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6))
    hist = report["ppo"]["history"]
    done = [h for h in hist if h["return"] is not None]
    if done:
        ax0.plot(
            [h["step"] for h in done],
            [h["return"] for h in done],
            marker=".",
            alpha=0.5,
            label="training episodes (stochastic, last 100)",
        )
    # The curve to judge: every saved policy, deterministic, on the same starts and flow noise.
    saved = sorted((p["steps"], p["dream"]["mean_return"]) for p in report["policies"].values())
    ax0.plot(
        [x for x, _ in saved],
        [r for _, r in saved],
        marker="o",
        label="saved policies, every bank start (deterministic)",
    )
    ax0.set(
        xlabel="dream env steps",
        ylabel="episodic return (dream)",
        title="residual PPO in the dream",
    )
    ax0.legend(fontsize=7)
    names = list(report["policies"])
    x = np.arange(len(names))
    for off, key, label in ((-0.2, "dream", "imagined"), (0.2, "real", "real")):
        rates, lo, hi = [], [], []
        for n in names:
            r = report["policies"][n].get(key)
            rates.append(r["success_rate"] if r else np.nan)
            lo.append(r["success_rate"] - r["wilson95"][0] if r else 0)
            hi.append(r["wilson95"][1] - r["success_rate"] if r else 0)
        ax1.bar(x + off, rates, 0.4, yerr=[lo, hi], capsize=3, label=label)
    ax1.set_xticks(x, names, rotation=20)
    ax1.set(ylim=(0, 1.05), ylabel="success rate", title="imagined vs real (Wilson 95%)")
    ax1.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_wmrl(cfg: WMRLConfig) -> dict[str, Any]:
    """Run the whole pipeline (see the module docstring) and return the report dict."""
    from rla_gym.agents import PPO, ActorCritic, PPOConfig, make_residual_policy
    from rla_gym.envs.rla_world import RLAWorldConfig
    from rla_gym.envs.vector import RLAWorldVectorEnv
    from rla_gym.evaluation.real import RealEvalConfig, SavedPolicy, evaluate_in_sim
    from rla_gym.utils.provenance import provenance

    t_start = time.perf_counter()
    out = Path(cfg.out)
    (out / "ppo").mkdir(parents=True, exist_ok=True)
    _check_resume(cfg, out / "ppo" / "options.json")  # before anything is trained
    bundle = _bundle_path(cfg)
    env_opts: dict[str, Any] = {} if cfg.reward_mode is None else {"reward_mode": cfg.reward_mode}
    if cfg.reset_starts is not None:
        env_opts["reset_starts"] = cfg.reset_starts
    # The bundled policies read features; a world model that dreams the body still dreams it.
    env_cfg = RLAWorldConfig(
        artifacts=str(bundle), device=cfg.device, flow_steps=cfg.flow_steps, obs_mode="patch",
        **env_opts,
    )  # fmt: skip
    penalty: dict[str, Any] = {}
    if cfg.uncertainty_penalty > 0:  # training only: the imagined evaluation scores as before
        penalty = {"uncertainty_penalty": cfg.uncertainty_penalty,
                   "num_uncertainty_samples": cfg.uncertainty_samples}  # fmt: skip
    train_cfg = dataclasses.replace(
        env_cfg,
        reset_demo_fraction=cfg.reset_demo_fraction,
        max_episode_steps=cfg.episode_chunks,
        **penalty,
    )
    train_env = RLAWorldVectorEnv(cfg.num_envs, config=train_cfg)
    core = train_env.core
    manifest = core.manifest
    base_path = _base_policy(cfg, bundle, core.chunk)
    base = ActorCritic.load(base_path)
    if base.action_dim != core.chunk * core.action_dim:
        from rla_gym.agents.networks import SpaceMismatchError

        raise SpaceMismatchError(
            f"BC policy {base_path} outputs {base.action_dim} values but the env takes chunks of "
            f"{core.chunk} x {core.action_dim}; retrain it with --bc-data"
        )

    # ---- residual PPO in the dream (resumable; snapshots along the way)
    ppo_dir = out / "ppo"
    ppo_cfg = PPOConfig.wmrl(
        n_steps=cfg.n_steps,
        learning_rate=cfg.learning_rate,
        critic_learning_rate=cfg.learning_rate,
        seed=cfg.seed,
        minibatch_size=min(256, cfg.n_steps * cfg.num_envs),
        group_size=cfg.group_size,
    )
    if (ppo_dir / "checkpoint" / "model.safetensors").exists():
        agent = PPO.load(ppo_dir / "checkpoint", env=train_env, device=cfg.device)
    else:
        policy = make_residual_policy(base, scale=cfg.residual_scale)
        agent = PPO(train_env, ppo_cfg, policy=policy, device=cfg.device)
    history_path = ppo_dir / "history.json"
    history: list[dict[str, float]] = load_json(history_path) if history_path.exists() else []
    batch = cfg.n_steps * cfg.num_envs
    iterations = max(1, math.ceil(cfg.ppo_steps / batch))
    snap_every = max(1, iterations // (cfg.snapshots + 1))

    def trained_seconds() -> float:
        """Training time summed over every call that trained (a resumed run keeps its time)."""
        return float(history[-1].get("wall_clock_s", 0.0)) if history else 0.0

    wall_before = trained_seconds()
    t0 = time.perf_counter()

    def on_iteration(ag: PPO, metrics: dict[str, float]) -> None:
        ret = metrics["charts/episodic_return"]  # NaN until an episode has finished
        history.append(
            {
                "step": ag.num_timesteps,
                "iteration": ag.iteration,
                "return": None if math.isnan(ret) else ret,
                # The optimiser's health: how far each update moved, how well the critic fits.
                **{k: metrics[f"losses/{k}"] for k in _HEALTH},
                "wall_clock_s": wall_before + time.perf_counter() - t0,
            }
        )
        if ag.iteration % snap_every == 0 and ag.iteration < iterations:
            ag.policy.save(ppo_dir / "snapshots" / f"step_{ag.num_timesteps:07d}")
        ag.save(ppo_dir / "checkpoint")
        save_json(history, history_path)

    remaining = cfg.ppo_steps - agent.num_timesteps
    if remaining > 0:
        agent.learn(remaining, callback=on_iteration, progress_bar=cfg.progress)
    ppo_wall = trained_seconds()
    final_path = agent.policy.save(ppo_dir / "final")
    train_env.close()

    # ---- imagined evaluation of BC, snapshots and the final policy from the bank's starts
    starts = list(range(min(len(core.reset_features), cfg.dream_eval_starts)))
    eval_chunks = imagined_horizon(manifest, cfg.eval_max_steps)
    eval_env = RLAWorldVectorEnv(
        len(starts), config=dataclasses.replace(env_cfg, max_episode_steps=eval_chunks)
    )
    # name -> (folder, dream env steps of PPO it had when saved)
    policies: dict[str, tuple[Path, int]] = {"bc": (base_path, 0)}
    for snap in sorted((ppo_dir / "snapshots").glob("step_*")):
        steps = int(snap.name[5:])
        policies[f"ppo@{steps}"] = (snap, steps)
    policies["bc+ppo"] = (final_path, agent.num_timesteps)
    report_policies: dict[str, dict[str, Any]] = {}
    from tqdm.auto import tqdm

    for name, (path, steps) in tqdm(
        policies.items(), desc=f"dream eval ({len(starts)} starts)", disable=not cfg.progress
    ):
        pol = ActorCritic.load(path)
        report_policies[name] = {
            "path": str(path),
            "steps": steps,
            "dream": dream_evaluate(pol, eval_env, starts, seed=cfg.seed),
        }
    eval_env.close()
    # Every policy against the base on the same starts with the same flow noise: paired.
    bc_dream = report_policies["bc"]["dream"]
    for name, entry in report_policies.items():
        if name != "bc":
            entry["vs_bc"] = {
                key: paired_difference(entry["dream"][key], bc_dream[key])
                for key in ("returns", "success")
            }

    # ---- real evaluation of BC and the final policy
    for name in cfg.real_policies if cfg.eval_episodes > 0 else ():
        real_cfg = RealEvalConfig.for_bundle(
            manifest,
            episodes=cfg.eval_episodes,
            max_steps=cfg.eval_max_steps,
            workers=cfg.eval_workers,
            seed=cfg.seed,
            video_dir=out / "videos" / name.replace("+", "_"),
            videos=cfg.videos,
        )
        res = evaluate_in_sim(SavedPolicy(report_policies[name]["path"]), real_cfg,
                              progress=cfg.progress)  # fmt: skip
        res.pop("config")
        report_policies[name]["real"] = res

    report = {
        "suite": cfg.suite,
        "bundle": str(bundle),
        "sim": manifest["sim"],
        "task": manifest["task"],
        "encoder": manifest["encoder_fingerprint"],
        "reward_mode": core.config.reward_mode,
        "success_estimate": "progress_head" if core.success_from_head else "goal_distance",
        "imagined_chunks": eval_env.max_episode_steps,
        "config": to_jsonable(cfg),
        "ppo": {"env_steps": agent.num_timesteps, "wall_clock_s": ppo_wall, "history": history},
        "policies": report_policies,
        "wall_clock_s": time.perf_counter() - t_start,
        "provenance": provenance(
            seed=cfg.seed, encoder=manifest["encoder_fingerprint"], device=str(core.device)
        ),
    }
    save_json(report, out / "report.json")
    _plot(report, out / "curves.png")
    return report


def format_report(report: dict[str, Any]) -> str:
    """Imagined vs real success side by side, one line per policy."""
    lines = [
        f"{'policy':<14} {'imagined success':>24} {'imagined return':>16} "
        f"{'real success':>24} {'real return':>12}"
    ]

    def fmt(r: dict[str, Any] | None) -> str:
        if r is None:
            return "-"
        lo, hi = r["wilson95"]
        return f"{r['successes']}/{r['episodes']} [{lo:.2f}, {hi:.2f}]"

    for name, p in report["policies"].items():
        real = p.get("real")
        lines.append(
            f"{name:<14} {fmt(p['dream']):>24} {p['dream']['mean_return']:>16.3f} "
            f"{fmt(real):>24} {real['mean_return'] if real else float('nan'):>12.3f}"
        )
    paired = [(n, p["vs_bc"]) for n, p in report["policies"].items() if "vs_bc" in p]
    if paired:
        lines.append("")
        lines.append(
            "imagined, paired against bc on the same starts and flow noise (95% t-interval):"
        )
        for name, vs in paired:
            r, s = vs["returns"], vs["success"]
            lines.append(
                f"  {name:<12} return {r['mean']:+.3f} [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]"
                f" (better on {r['wins']}, worse on {r['losses']} of {r['episodes']} starts); "
                f"success {s['mean']:+.2f} ({s['wins']} gained, {s['losses']} lost)"
            )
    return "\n".join(lines)
