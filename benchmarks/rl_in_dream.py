"""Agents trained in the dream against agents trained in reality, both judged in the real simulator.

(a) dm-control reacher-easy. SB3 PPO trained only in ``RLAWorld-dmc-reacher-v0`` (the dream) and
    the same SB3 PPO trained in the real simulator through ``RealFeatureEnv`` (the same encoder
    patch features and chunked actions, the real task reward), each for the same wall-clock
    budget on the same threads. Snapshots along training, a uniform random policy and the final
    policies run in real reacher-easy on the same seeds; the score is the real return (dm-control
    reward summed over the dreamed env's horizon: control steps with the finger on the target).
    Target: the dream-trained return is at least 80 % of the real-trained one.
(b) LIBERO: behaviour cloning vs BC + residual PPO in the dream (paper §8.2), judged in real
    LIBERO; see :func:`part_b`.

    python benchmarks/rl_in_dream.py --artifacts rla_gym/envs/assets/dmc-reacher   # ~20 min
    python benchmarks/rl_in_dream.py --artifacts /tmp/bundle --budget-min 0.5 --eval-episodes 4 \\
        --out /tmp/rl_in_dream.json                                                 # smoke run
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import tyro
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

import rla_gym  # noqa: F401  (registers the RLAWorld-* ids)
from rla_gym.envs.real import RealFeatureEnv
from rla_gym.envs.rla_world import resolve_artifacts
from rla_gym.errors import EncoderMismatchError
from rla_gym.evaluation.real import rollout
from rla_gym.sb3 import SB3VecEnvAdapter, patch_policy_kwargs
from rla_gym.utils import load_json, provenance, save_json
from rla_gym.utils.io import to_jsonable
from rla_gym.utils.stats import wilson_interval

DREAM_ID = "RLAWorld-dmc-reacher-v0"


@dataclass(frozen=True)
class Args:
    parts: tuple[Literal["a", "b"], ...] = ("a",)
    """which parts to run; results of parts not run are kept from the existing JSON"""
    artifacts: str | None = None
    """dm-control reacher bundle (default: the embedded rla_gym/envs/assets/dmc-reacher)"""
    budget_min: float = 8.0
    """training wall-clock per arm in minutes (snapshot evaluations excluded)"""
    eval_episodes: int = 30
    """real episodes per evaluated policy, on seeds eval_seed + i (the same for every policy)"""
    eval_seed: int = 10_000
    """first evaluation seed (training resets draw their seeds elsewhere)"""
    curve_points: int = 6
    """snapshots per arm after the untrained one, evenly spaced in training time"""
    dream_envs: int = 32
    """dreamed envs advanced by one batched world-model call"""
    real_envs: int = 4
    """real simulators stepped in turn in one process (SB3 DummyVecEnv)"""
    n_steps: int = 64
    """PPO steps per env per rollout (both arms)"""
    batch_size: int = 256
    """PPO minibatch (both arms)"""
    n_epochs: int = 4
    """PPO epochs per rollout (both arms)"""
    learning_rate: float = 3e-4
    """Adam learning rate (both arms)"""
    gamma: float = 0.9
    """discount (both arms; episodes are 8 chunks)"""
    flow_steps: int = 10
    """Euler steps of the world model per dreamed step"""
    threads: int = 1
    """torch threads, the same for both arms"""
    seed: int = 0
    """seed of SB3, of the training resets and of the random policy"""
    libero_artifacts: str | None = None
    """(b) LIBERO bundle with a BC base policy (default: the embedded rla_gym/envs/assets/libero)"""
    libero_seeds: tuple[int, ...] = (0, 1)
    """(b) residual-PPO seeds (each trains its own residual and is evaluated in real LIBERO)"""
    libero_ppo_steps: int = 12_288
    """(b) dream env steps of residual PPO per seed"""
    libero_eval_episodes: int = 25
    """(b) real LIBERO episodes per policy: init states 0..n-1 (the same for every policy)"""
    libero_runs: Path = Path("runs/rl_in_dream_b")
    """(b) WMRL output folders (<libero_runs>/seed<k>; re-running resumes)"""
    out: Path = Path("benchmarks/results/rl_in_dream.json")
    """result JSON; the learning-curve PNG goes next to it"""


# --------------------------------------------------------------------------- evaluation
def evaluate_real(act: Any, env: RealFeatureEnv, seeds: list[int]) -> dict[str, Any]:
    """Run ``act(obs) -> action`` for one episode per seed in the real env (the shared
    :func:`~rla_gym.evaluation.real.rollout`).

    Returns:
        per-episode ``returns`` and ``successes`` (touched the target at some step), their
        means, a normal-approximation 95 % interval of the mean return and the success Wilson
        interval.
    """
    episodes = [rollout(env, act, s) for s in seeds]
    returns = [e["return"] for e in episodes]
    successes = [e["success"] for e in episodes]
    x = np.asarray(returns)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
    k = int(sum(successes))
    return {"returns": returns, "successes": successes, "mean_return": float(x.mean()),
            "ci95": [float(x.mean() - half), float(x.mean() + half)],
            "success_rate": k / len(x), "wilson95": list(wilson_interval(k, len(x)))}  # fmt: skip


def _sb3_act(model: PPO) -> Any:
    return lambda obs: model.predict(obs, deterministic=True)[0]


def _ratio_ci(num: list[float], den: list[float], seed: int, n: int = 2000) -> list[float] | None:
    """Paired bootstrap 95 % interval of ``mean(num) / mean(den)`` over the shared seeds."""
    a, b = np.asarray(num), np.asarray(den)
    idx = np.random.default_rng(seed).integers(0, len(a), (n, len(a)))
    d = b[idx].mean(1)
    r = a[idx].mean(1)[d > 0] / d[d > 0]  # resamples with a zero denominator have no ratio
    if len(r) == 0:
        return None
    return [float(np.percentile(r, 2.5)), float(np.percentile(r, 97.5))]


# --------------------------------------------------------------------------- training
class BudgetCallback(BaseCallback):
    """Stop after ``budget_s`` of training time; keep policy snapshots at evenly spaced times."""

    def __init__(self, budget_s: float, points: int) -> None:
        super().__init__()
        self.budget_s = budget_s
        self.marks = [budget_s * (i + 1) / points for i in range(points)]
        self.snapshots: list[dict[str, Any]] = []
        self.train_curve: list[dict[str, float]] = []

    def _snapshot(self, elapsed: float) -> None:
        state = copy.deepcopy(self.model.policy.state_dict())
        self.snapshots.append({"wall_clock_s": elapsed, "timesteps": int(self.num_timesteps),
                               "state": state})  # fmt: skip

    def _on_training_start(self) -> None:
        self.t0 = time.perf_counter()
        self._snapshot(0.0)

    def _on_rollout_end(self) -> None:
        eps = self.model.ep_info_buffer
        if eps:
            self.train_curve.append({"wall_clock_s": time.perf_counter() - self.t0,
                                     "timesteps": int(self.num_timesteps),
                                     "return": float(np.mean([e["r"] for e in eps]))})  # fmt: skip

    def _on_step(self) -> bool:
        elapsed = time.perf_counter() - self.t0
        while self.marks and elapsed >= self.marks[0]:
            self.marks.pop(0)
            self._snapshot(elapsed)
        return bool(self.marks)


def train_arm(name: str, env: Any, args: Args) -> tuple[PPO, BudgetCallback]:
    """Train SB3 PPO on ``env`` until the wall-clock budget is spent."""
    model = PPO(
        "MlpPolicy", env, n_steps=args.n_steps, batch_size=args.batch_size,
        n_epochs=args.n_epochs, learning_rate=args.learning_rate, gamma=args.gamma,
        policy_kwargs=patch_policy_kwargs(log_std_init=-0.5), seed=args.seed, device="cpu",
        verbose=0,
    )  # fmt: skip
    cb = BudgetCallback(args.budget_min * 60.0, args.curve_points)
    print(f"[{name}] training for {args.budget_min:g} min ...", flush=True)
    model.learn(total_timesteps=10**12, callback=cb)
    last = cb.snapshots[-1]
    print(f"[{name}] {last['timesteps']} env steps in {last['wall_clock_s']:.0f} s", flush=True)
    return model, cb


def _curve(model: PPO, cb: BudgetCallback, env: RealFeatureEnv, seeds: list[int],
           name: str) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for snap in cb.snapshots:
        model.policy.load_state_dict(snap["state"])
        ev = evaluate_real(_sb3_act(model), env, seeds)
        rows.append({"wall_clock_s": snap["wall_clock_s"], "timesteps": snap["timesteps"], **ev})
        print(
            f"[{name}] {snap['wall_clock_s']:6.0f} s {snap['timesteps']:8d} steps: real return "
            f"{ev['mean_return']:.2f}, success {ev['success_rate']:.2f}",
            flush=True,
        )
    return rows


def part_a(args: Args) -> dict[str, Any]:
    """Dream-trained vs real-trained PPO on reacher-easy, judged by the real return."""
    torch.set_num_threads(args.threads)
    bundle = resolve_artifacts(args.artifacts, "dmc-reacher")
    man = load_json(bundle / "manifest.json")
    horizon = int(man["max_episode_steps"])  # the bundle's horizon, as the dreamed env uses
    real_kwargs = dict(sim=man["sim"], task=man["task"], resolution=int(man["resolution"]),
                       encoder=man["encoder"], chunk=int(man["chunk"]),
                       max_episode_steps=horizon)  # fmt: skip
    eval_env = RealFeatureEnv(**real_kwargs)
    if eval_env.encoder.fingerprint != man["encoder_fingerprint"]:
        raise EncoderMismatchError(
            f"the bundle's features come from {man['encoder_fingerprint']}, the real env encodes "
            f"with {eval_env.encoder.fingerprint}"
        )
    seeds = [args.eval_seed + i for i in range(args.eval_episodes)]

    # -- arm 1: the dream ------------------------------------------------------------------------
    venv = gym.make_vec(DREAM_ID, num_envs=args.dream_envs, vectorization_mode="vector_entry_point",
                        artifacts=str(bundle), flow_steps=args.flow_steps)  # fmt: skip
    dream_env = VecMonitor(SB3VecEnvAdapter(venv.unwrapped))
    dream_env.seed(args.seed)
    dream_model, dream_cb = train_arm("dream", dream_env, args)
    dream_env.close()

    # -- arm 2: the real simulator ---------------------------------------------------------------
    real_env = VecMonitor(DummyVecEnv([lambda: RealFeatureEnv(**real_kwargs)] * args.real_envs))
    real_env.seed(args.seed)
    real_model, real_cb = train_arm("real", real_env, args)
    real_env.close()

    # -- judgement: every policy on the same real seeds ------------------------------------------
    rng = np.random.default_rng(args.seed)
    space = eval_env.action_space
    rand = evaluate_real(lambda _: rng.uniform(-1, 1, space.shape).astype(np.float32),
                         eval_env, seeds)  # fmt: skip
    print(f"[random] real return {rand['mean_return']:.2f}", flush=True)
    curves = {"dream": _curve(dream_model, dream_cb, eval_env, seeds, "dream"),
              "real": _curve(real_model, real_cb, eval_env, seeds, "real")}  # fmt: skip
    eval_env.close()
    final = {k: v[-1] for k, v in curves.items()}
    real_mean = final["real"]["mean_return"]
    # No ratio when the real-trained policy never scores (only in smoke runs).
    ratio = final["dream"]["mean_return"] / real_mean if real_mean > 0 else None
    result = {
        "task": f"{man['sim']}/{man['task']}", "bundle": str(bundle),
        "encoder_fingerprint": man["encoder_fingerprint"], "chunk": int(man["chunk"]),
        "horizon_chunks": horizon, "max_return": horizon * int(man["chunk"]),
        "eval_seeds": seeds, "random": rand, "curves": curves,
        "train_curves": {"dream": dream_cb.train_curve, "real": real_cb.train_curve},
        "final": {k: {kk: v[kk] for kk in ("wall_clock_s", "timesteps", "mean_return", "ci95",
                                           "success_rate", "wilson95")}
                  for k, v in final.items()},
        "dream_over_real_return": ratio,
        "dream_over_real_ci95": _ratio_ci(final["dream"]["returns"], final["real"]["returns"],
                                          args.seed),
        "target_ratio": 0.8, "target_met": None if ratio is None else bool(ratio >= 0.8),
        "config": to_jsonable(args),
        "protocol": (
            "SB3 PPO with SB3PatchExtractor, identical hyper-parameters in both arms except the "
            "number of envs; each arm trains for the same wall-clock budget on the same torch "
            "threads; real return = dm-control reward summed over the dreamed horizon"
        ),
    }  # fmt: skip
    plot(result, args.out.with_suffix(".png"))
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    """Real return of the snapshots against training time and env steps, random as reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, color in (("dream", "tab:blue"), ("real", "tab:orange")):
        rows = result["curves"][name]
        m = np.array([r["mean_return"] for r in rows])
        lo = np.array([r["ci95"][0] for r in rows])
        hi = np.array([r["ci95"][1] for r in rows])
        for ax, x in ((axes[0], [r["wall_clock_s"] / 60 for r in rows]),
                      (axes[1], [max(r["timesteps"], 1) for r in rows])):  # fmt: skip
            ax.plot(x, m, "o-", color=color, label=f"PPO trained in {name}")
            ax.fill_between(x, lo, hi, color=color, alpha=0.2)
    for ax in axes:
        ax.axhline(result["random"]["mean_return"], color="gray", ls="--", label="random")
        ax.set_ylabel("real return")
        ax.grid(alpha=0.3)
    axes[0].set_xlabel("training wall-clock (min)")
    axes[1].set_xlabel("env steps (chunks of K control steps)")
    axes[1].set_xscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{result['task']}: real return of PPO snapshots "
                 f"({len(result['eval_seeds'])} episodes, 95 % CI)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- part (b)
def part_b(args: Args) -> dict[str, Any]:
    """(b) LIBERO: BC vs BC + residual PPO in the dream (paper §8.2), both judged in real LIBERO.

    Each seed runs :func:`rla_gym.pipelines.wmrl.run_wmrl`: the bundle's BC base, residual PPO
    in the batched dream, imagined evaluation, then real LIBERO over init states
    ``0..libero_eval_episodes-1``. The BC policy and LIBERO are deterministic, so BC is evaluated
    once (with the first seed); every seed's final policy is evaluated. Target: residual
    PPO raises real success over its BC init.
    """
    from rla_gym.pipelines.wmrl import WMRLConfig, run_wmrl

    torch.set_num_threads(args.threads)
    runs = []
    for i, seed in enumerate(args.libero_seeds):
        cfg = WMRLConfig(
            artifacts=args.libero_artifacts, out=args.libero_runs / f"seed{seed}",
            ppo_steps=args.libero_ppo_steps, eval_episodes=args.libero_eval_episodes,
            seed=seed, videos=0, real_policies=("bc", "bc+ppo") if i == 0 else ("bc+ppo",),
        )
        runs.append(run_wmrl(cfg))
    bc = runs[0]["policies"]["bc"]
    finals = [r["policies"]["bc+ppo"] for r in runs]
    k = sum(f["real"]["successes"] for f in finals)
    n = sum(f["real"]["episodes"] for f in finals)
    return {
        "task": runs[0]["task"], "bundle": runs[0]["bundle"], "encoder": runs[0]["encoder"],
        "seeds": list(args.libero_seeds), "ppo_steps": args.libero_ppo_steps,
        "eval_episodes": args.libero_eval_episodes,
        "bc": {"real": _strip(bc["real"]), "dream": _strip(bc["dream"])},
        "bc_ppo": [{"seed": s, "real": _strip(f["real"]), "dream": _strip(f["dream"]),
                    "ppo_wall_clock_s": r["ppo"]["wall_clock_s"]}
                   for s, f, r in zip(args.libero_seeds, finals, runs, strict=True)],
        "bc_ppo_pooled": {"successes": k, "episodes": n, "success_rate": k / max(n, 1),
                          "wilson95": list(wilson_interval(k, n))},
        "wall_clock_s": sum(r["wall_clock_s"] for r in runs),
    }


def _strip(res: dict[str, Any]) -> dict[str, Any]:
    """A WMRL evaluation without its per-episode rows (kept in the run folders)."""
    return {k: v for k, v in res.items() if k not in ("rows", "returns", "success_any",
                                                       "success_final", "starts", "videos")}


PARTS = {"a": part_a, "b": part_b}


def main(args: Args) -> dict[str, Any]:
    old = load_json(args.out) if args.out.exists() else {}
    result = {k: v for k, v in old.items() if k in PARTS}
    out: dict[str, Any] = {}
    for name in args.parts:
        result[name] = PARTS[name](args)
        # Re-read before writing: the parts may run as separate processes side by side.
        latest = load_json(args.out) if args.out.exists() else {}
        result = {**{k: v for k, v in latest.items() if k in PARTS}, name: result[name]}
        out = {"provenance": provenance(seed=args.seed, device="cpu",
                                        encoder=result.get("a", {}).get("encoder_fingerprint")),
               **result}  # fmt: skip
        save_json(out, args.out)  # after each part, so a failing later part keeps it
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
