"""What must a reacher policy be shown to learn control? PPO on dm-control's true state.

PPO trained from scratch in the reacher dream stalls near 55 % real success, and told the true
target (``goal_readout.py``) near 59 %. This benchmark takes the world model and the encoder out
of the question: the same PPO (``rl_in_dream_reacher.py``'s hyper-parameters and goal-policy
network, one torque held for each chunk, the bundle's chunk and horizon) learns in the real
simulator from its **true** state, shown the goal in one of three forms:

* ``effector``: where the target is from the fingertip (metres), beside the joint angles' sin /
  cos and the velocities: what an effector-goal readout hands over;
* ``sincos``: the goal's joint angles (inverse kinematics of the target, the elbow nearest the
  arm's) as sin / cos, the body's, their gap, and the body: the form of a joint-space goal
  readout without its angle error;
* ``angles``: the same plus each joint's wrapped angle error, goal minus body (what
  :class:`rla_gym.sb3.SB3GoalExtractor` adds for a joint-space head).

and one row without learning: ``expert, held``, the scripted IK + PD expert deciding once per
chunk and holding its torque (can one held torque per chunk solve the task at all?).

Reward: minus the finger-to-target distance (m) at the chunk's end, plus 1 when the finger
touched the target during the chunk, which ends the episode. Every arm is judged every
``eval_every`` chunks on ``episodes`` held-out starts (seeds ``eval_seed + i``, 20000+ by
default: apart from the 10000+ every ``rl_in_dream_reacher.py`` arm is judged on, so nothing here
is chosen on them), success = the finger touches the target within the horizon.

    python benchmarks/reacher_policy_input.py        # ~15 min on one core
    python benchmarks/reacher_policy_input.py --chunks 8192 --eval-every 4096 --episodes 4 \\
        --seeds 0 --out /tmp/rpi.json                # smoke run
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import tyro
from rl_in_dream_reacher import GOAL_POLICY
from rl_in_dream_reacher import Args as ArmArgs

from rla_gym.envs.rla_world import resolve_artifacts
from rla_gym.sims.dmc import DMCSim
from rla_gym.sims.kinematics import wrap_angle
from rla_gym.sims.policies import ReacherExpert
from rla_gym.utils import load_json, provenance, save_json
from rla_gym.utils.stats import wilson_interval

Form = Literal["effector", "sincos", "angles"]
FORMS: tuple[Form, ...] = ("effector", "sincos", "angles")


@dataclass(frozen=True)
class Args:
    forms: tuple[Form, ...] = FORMS
    """the goal forms to train PPO with"""
    seeds: tuple[int, ...] = (0, 1)
    """PPO seeds per form"""
    chunks: int = 131_072
    """PPO training chunks per run (summed over envs; the dream arm's 30 CPU-min are ~260k)"""
    eval_every: int = 32_768
    """judge the policy every this many chunks"""
    episodes: int = 100
    """held-out evaluation episodes per judgement"""
    eval_seed: int = 20_000
    """first evaluation seed (training resets draw from their own stream)"""
    envs: int = ArmArgs.dream_envs
    """simulators per PPO rollout (the dream arm's env count)"""
    artifacts: str | None = None
    """the reacher bundle whose chunk and horizon the episodes use (default: the embedded one)"""
    out: Path = Path("benchmarks/results/reacher_policy_input.json")
    """result file"""


class TrueStateReacher(gym.Env):
    """Real reacher-easy, no camera: one ``(2,)`` torque held for ``chunk`` control steps,
    ``horizon`` chunks; the observation is the true state with the goal in ``form``."""

    def __init__(self, form: Form, chunk: int, horizon: int) -> None:
        self.sim = DMCSim("reacher-easy", render=False)
        self.expert = ReacherExpert(self.sim)
        self.form, self.chunk, self.horizon = form, chunk, horizon
        size = {"effector": 8, "sincos": 18, "angles": 20}[form]
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._seeds = np.random.default_rng()

    def observe(self, st: Any) -> np.ndarray:
        q, v = st.proprio[:2], st.proprio[2:] * 0.1  # velocities reach ~10 rad/s
        body = np.concatenate([np.sin(q), np.cos(q)])
        if self.form == "effector":
            return np.concatenate([body, v, 5.0 * st.state["to_target"]]).astype(np.float32)
        goal_q = self.expert.inverse_kinematics(st.state["target_pos"], q)
        goal = np.concatenate([np.sin(goal_q), np.cos(goal_q)])
        parts = [goal, body, goal - body, body, v]
        if self.form == "angles":
            parts.append(wrap_angle(goal_q - q))
        return np.concatenate(parts).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
        if seed is not None:
            self._seeds = np.random.default_rng(seed)
        start = (options or {}).get("seed")  # an evaluation start, else a training draw
        st = self.sim.reset(seed=int(self._seeds.integers(2**31 - 1) if start is None else start))
        self.t, self.last = 0, st
        return self.observe(st), {}

    def step(self, action: np.ndarray) -> tuple:
        a = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        touched = False
        for _ in range(self.chunk):
            st = self.sim.step(a, render=False)
            touched |= st.success
        self.t, self.last = self.t + 1, st
        reward = float(touched) - float(np.linalg.norm(st.state["to_target"]))
        return self.observe(st), reward, touched, self.t >= self.horizon, {"is_success": touched}


def judge(act: Any, env: TrueStateReacher, args: Args) -> int:
    """Successes of ``act(obs, env) -> (2,)`` over the held-out starts."""
    wins = 0
    for i in range(args.episodes):
        obs, _ = env.reset(options={"seed": args.eval_seed + i})
        for _ in range(env.horizon):
            obs, _, touched, _, _ = env.step(act(obs, env))
            if touched:
                wins += 1
                break
    return wins


def train_form(form: Form, seed: int, args: Args, chunk: int, horizon: int) -> dict[str, Any]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    arm = ArmArgs()
    venv = DummyVecEnv([lambda: TrueStateReacher(form, chunk, horizon)] * args.envs)
    venv.seed(seed)
    model = PPO(
        "MlpPolicy", venv, n_steps=arm.n_steps, batch_size=arm.batch_size,
        n_epochs=arm.n_epochs, learning_rate=arm.learning_rate, gamma=arm.gamma,
        policy_kwargs=dict(GOAL_POLICY), seed=seed, device="cpu", verbose=0,
    )  # fmt: skip
    probe = TrueStateReacher(form, chunk, horizon)
    curve, t0 = [], time.process_time()
    while model.num_timesteps < args.chunks:
        model.learn(args.eval_every, reset_num_timesteps=False)
        wins = judge(lambda o, _e: model.predict(o, deterministic=True)[0], probe, args)
        curve.append({"chunks": int(model.num_timesteps), "success": wins})
        print(f"[{form} seed {seed}] {model.num_timesteps} chunks: {wins}/{args.episodes}")
    final = curve[-1]["success"]
    return {
        "success": final, "episodes": args.episodes,
        "wilson95": list(wilson_interval(final, args.episodes)),
        "curve": curve, "cpu_minutes": (time.process_time() - t0) / 60,
    }  # fmt: skip


def main(args: Args) -> dict[str, Any]:
    torch.set_num_threads(1)
    man = load_json(resolve_artifacts(args.artifacts, "dmc-reacher") / "manifest.json")
    chunk, horizon = int(man["chunk"]), int(man["max_episode_steps"])
    rows: dict[str, Any] = {}
    probe = TrueStateReacher("angles", chunk, horizon)
    held = judge(lambda _o, e: e.expert(e.last), probe, args)
    rows["expert, held"] = {
        "success": held, "episodes": args.episodes,
        "wilson95": list(wilson_interval(held, args.episodes)),
    }  # fmt: skip
    print(f"[expert, held] {held}/{args.episodes}")
    for form in args.forms:
        for seed in args.seeds:
            run = train_form(form, seed, args, chunk, horizon)
            rows[f"{form}, seed {seed}"] = {"form": form, "seed": seed, **run}
    arm = ArmArgs()
    result = {
        "provenance": provenance(seed=list(args.seeds), device="cpu", encoder=None),
        "task": "dmc/reacher-easy", "chunk": chunk, "horizon_chunks": horizon,
        "eval_seeds": [args.eval_seed, args.eval_seed + args.episodes - 1],
        "ppo": {"n_steps": arm.n_steps, "batch_size": arm.batch_size, "n_epochs": arm.n_epochs,
                "learning_rate": arm.learning_rate, "gamma": arm.gamma, "envs": args.envs,
                **GOAL_POLICY},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(args).items()},
        "arms": rows,
    }  # fmt: skip
    save_json(result, args.out)
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
