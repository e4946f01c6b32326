"""Is the model or the reward what stops the reacher planner? The planner with reality as its model.

The dream planner (``rl_in_dream_reacher.py``, arms ``planner*``) searches chunks in the dream
and gets no more real successes than the base it searches around. Two things could be at fault:
the dream (it follows the action at a cosine of ~0.15) or what the planner maximises (the dreamed
reward). This benchmark takes the dream out: the *same* planner (the package's
:class:`~rla_gym.planning.DreamPlanner` search, :class:`~rla_gym.planning.MPCController` warm
starts, base policy and reward) scores each candidate by running it in the real simulator from
the exactly restored current state (``get_sim_state`` / ``set_sim_state``), rendering and
encoding only the frames at chunk ends. Scorers:

* ``progress`` / ``aligned`` / ``goal``: the bundle's dreamed reward of that mode, computed on
  the encoded real frames (what a perfect world model would give the planner);
* ``privileged``: the simulator's own state, summed over chunks
  (:meth:`~rla_gym.sims.base.SimAdapter.task_score`: reacher's ``1[the finger touched the target
  in the chunk] − finger-to-target distance`` at its end): the planner's ceiling with this search.

If the oracle with the dreamed reward succeeds far more often than the dream planner, the world
model is what fails; if it does not, the reward is. Every arm runs on the same real seeds as
``rl_in_dream_reacher.py`` (``eval_seed + i``) for the bundle's horizon, each episode logged as it
ends, so a re-run resumes.

    python benchmarks/planner_oracle.py --scorers privileged progress           # both from scratch
    python benchmarks/planner_oracle.py --scorers progress --residual 0.2        # around the base
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro

from rla_gym.envs.rla_world import RLAWorldConfig, resolve_artifacts
from rla_gym.evaluation.real import RealEvalConfig, evaluate_in_sim
from rla_gym.planning import DreamPlanner, MPCController, PlannerConfig
from rla_gym.utils import load_json, provenance, save_json
from rla_gym.utils.io import to_jsonable

Scorer = Literal["privileged", "progress", "aligned", "goal"]


@dataclass(frozen=True)
class Args:
    artifacts: str | None = None
    """reacher bundle (default: the embedded rla_gym/envs/assets/dmc-reacher)"""
    scorers: tuple[Scorer, ...] = ("privileged", "progress")
    """one arm per scorer (see the module docstring)"""
    residual: float = 0.0
    """0: plan chunks from scratch in [-1, 1]; > 0: residuals of this size around the base"""
    samples: int = 64
    """candidates per CEM iteration (the dream planner arms' setting)"""
    horizon: int = 2
    """chunks per candidate sequence (the dream planner arms' setting)"""
    episodes: int = 50
    """real episodes per arm (seeds eval_seed + i)"""
    eval_seed: int = 10_000
    """first seed: the same episodes as rl_in_dream_reacher.py"""
    seed: int = 0
    """planner seed"""
    runs: Path = Path("runs/planner_oracle")
    """per-episode logs (resumable)"""
    out: Path = Path("benchmarks/results/planner_oracle.json")


class RealModelPlanner(DreamPlanner):
    """:class:`DreamPlanner` whose model is the real simulator of the bound env."""

    def __init__(self, env_config: RLAWorldConfig, config: PlannerConfig, scorer: Scorer) -> None:
        super().__init__(env_config, config)
        self.scorer = scorer
        self.env: Any = None

    @torch.no_grad()
    def rollout(
        self,
        s0: torch.Tensor,
        demo: int,
        t: int,
        sequences: torch.Tensor,
        noise_seed: int,
        previous: torch.Tensor | None = None,
    ) -> tuple[np.ndarray, torch.Tensor]:
        env = self.env
        if env is None:
            raise RuntimeError("bind the real env first (evaluate_in_sim calls bind_env)")
        sim, k_steps = env.sim, self.chunk
        start = sim.get_sim_state()
        m, horizon = sequences.shape[0], sequences.shape[1]
        states = [start] * m
        before = [sim.set_sim_state(start, render=False)] * m  # each candidate's chunk start
        s = s0.expand(m, *s0.shape).contiguous()
        demo_t = torch.full((m,), int(demo), dtype=torch.long)
        total, first = np.zeros(m), sequences[:, 0]
        for h in range(horizon):
            chunk = self.executed(s, sequences[:, h])
            if h == 0:
                first = chunk
            # Frames only where something reads them: the reward, or the base's next chunk.
            frames_needed = self.scorer != "privileged" or (
                self.base_policy is not None and h < horizon - 1
            )
            raw = env.to_sim_action(chunk.numpy().reshape(m, k_steps, -1))
            frames, privileged = [], np.zeros(m)
            for i in range(m):
                obs, hit = sim.run_from(states[i], raw[i], render_last=frames_needed)
                states[i] = sim.get_sim_state()
                frames.append(obs.frame)
                privileged[i] = sim.task_score(before[i], obs, hit)
                before[i] = obs
            if frames_needed:
                s = torch.from_numpy(env.encoder.encode(np.stack(frames))).float()
            if self.scorer == "privileged":
                total += privileged
            else:
                total += self.core.score(s, demo_t, np.full(m, t + (h + 1) * k_steps))[0]
        sim.set_sim_state(start, render=False)  # the episode goes on from where it was
        return total, first


class OracleController(MPCController):
    """The package's MPC around a :class:`RealModelPlanner`; ``bind_env`` hands it the env."""

    def bind_env(self, env: Any) -> None:
        self.planner.env = env


@dataclass(frozen=True)
class OraclePolicy:
    """Picklable factory of an :class:`OracleController` (one per evaluation worker)."""

    artifacts: str
    config: PlannerConfig
    scorer: Scorer

    def __call__(self) -> OracleController:
        torch.set_num_threads(1)
        mode = "progress" if self.scorer == "privileged" else self.scorer
        env_cfg = RLAWorldConfig(artifacts=self.artifacts, reward_mode=mode)
        return OracleController(RealModelPlanner(env_cfg, self.config, self.scorer))


def arm_name(scorer: str, residual: float, horizon: int = 2) -> str:
    how = "from scratch" if residual == 0 else f"residual {residual:g}"
    longer = "" if horizon == 2 else f", horizon {horizon}"  # 2: the dream planner arms'
    return f"real sim + {scorer}, {how}{longer}"


def main(args: Args) -> dict[str, Any]:
    torch.set_num_threads(1)
    bundle = resolve_artifacts(args.artifacts, "dmc-reacher")
    man = load_json(bundle / "manifest.json")
    if man["sim"] != "dmc" or not man["task"].startswith("reacher"):
        raise ValueError(f"{bundle} is a {man['sim']}/{man['task']} bundle, not reacher's")
    old = load_json(args.out) if args.out.exists() else {}
    arms = old.get("arms", {}) if old.get("bundle_created_utc") == man["created_utc"] else {}
    chunk, horizon = int(man["chunk"]), int(man["max_episode_steps"])
    for scorer in args.scorers:
        name = arm_name(scorer, args.residual, args.horizon)
        pcfg = PlannerConfig(samples=args.samples, horizon=args.horizon,
                             residual_scale=args.residual, seed=args.seed)  # fmt: skip
        cfg = RealEvalConfig.for_bundle(man, episodes=args.episodes, max_steps=horizon * chunk,
                                        workers=1, seed=args.eval_seed)  # fmt: skip
        policy = OraclePolicy(str(bundle), pcfg, scorer)
        folder = args.runs / man["created_utc"].replace(":", "") / name.replace(" ", "_")
        log = folder / "eval.jsonl"
        t0 = time.perf_counter()
        res = evaluate_in_sim(policy, cfg, progress=False, resume=log,
                              identity={"arm": name, "policy": to_jsonable(policy)})  # fmt: skip
        print(f"[{name}] real success {res['successes']}/{res['episodes']}", flush=True)
        arms[name] = {
            "success": res["successes"], "episodes": res["episodes"],
            "return": res["mean_return"], "wilson95": res["wilson95"],
            "mean_decision_s": res["mean_decision_s"], "scorer": scorer,
            "planner": dataclasses.asdict(pcfg),
            "per_episode_success": [bool(r["success"]) for r in res["rows"]],
            "wall_minutes": (time.perf_counter() - t0) / 60.0,
        }  # fmt: skip
        out = {
            "provenance": provenance(seed=args.seed, encoder=man["encoder_fingerprint"],
                                     device="cpu"),
            "task": f"{man['sim']}/{man['task']}", "bundle": str(bundle),
            "bundle_created_utc": man["created_utc"], "chunk": chunk, "horizon_chunks": horizon,
            "eval_seeds": [args.eval_seed, args.eval_seed + args.episodes - 1],
            "arms": arms,
        }  # fmt: skip
        save_json(out, args.out)
    return load_json(args.out)


if __name__ == "__main__":
    main(tyro.cli(Args))
