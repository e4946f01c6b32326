"""Does RL in the dream pay off in reality? dm-control reacher-easy, judged in the real simulator.

Arms, all judged on the same real episodes (seeds ``eval_seed + i``, the bundle's horizon,
success = the finger touches the target at some control step):

* ``dream``: SB3 PPO trained only in ``RLAWorld-dmc-reacher-v0`` (the embedded bundle's dream);
* ``real``: the same PPO, same hyper-parameters, trained in the real simulator through
  :class:`~rla_gym.envs.real.RealFeatureEnv` (same encoder features, same actions, the
  dm-control reward) for the same compute;
* ``random``: uniform random actions;
* ``bc``: the bundle's behaviour-cloned policy (the reference the planner searches around);
* ``bc+ppo``: ``bc`` plus a residual head trained by PPO only in the dream (the Lift and
  LIBERO recipe, :func:`rla_gym.pipelines.wmrl.run_wmrl`, ``--residual-ppo-steps`` chunks);
* ``planner``: MPC with the dream planner (CEM over chunks, residual around ``bc``);
* ``planner-wm``: the same planner dreaming with ``--planner-world-model`` instead of the
  bundle's world model (e.g. the direct-regression checkpoint of the levers study).

``--reward-mode`` sets the dreamed reward the ``dream`` arm trains on and the planner arms score
candidates by (default: the env's, ``aligned``). ``--tag T`` names the bundle arms run ``<arm> T``
(e.g. ``planner progress``), so variants sit side by side with their own models and logs.

On a bundle whose world model dreams the robot's body (manifest ``proprio``), ``--obs-mode``
says what the PPO arms see (:mod:`rla_gym.envs.body`): ``auto`` (default) and
``features+proprio`` show it the body beside the features (SB3 ``MultiInputPolicy``, the same
``SB3PatchExtractor``; judged in reality with the real body vector), ``patch`` the features
alone (the dream still dreams the body). On a features-only bundle ``auto`` is ``patch``. The
``real`` arm follows it (named ``real features+proprio`` when it reads the body). Each row
records its ``obs_mode``.

``--out`` defaults to the shipped result file of the embedded bundle. Another bundle
(``--artifacts``) built at another time (another ``created_utc``) must name its own ``--out``,
else it would move the shipped rows under ``superseded``; a rebuilt embedded bundle does move
them there.

Both PPO arms train for ``budget_min`` minutes of this process's CPU time
(:class:`~rla_gym.sb3.BudgetCallback`), so another job on the machine slows both alike. Every
arm's real evaluation is logged episode by episode under ``runs/rl_in_dream_reacher`` and a
re-run resumes it; trained PPO models are kept there too (delete the folder to retrain).

    python benchmarks/rl_in_dream_reacher.py                        # ~60 min on 2 cores
    python benchmarks/rl_in_dream_reacher.py --budget-min 0.5 --episodes 4 --planner-samples 8 \\
        --runs /tmp/rid --out /tmp/rl_in_dream_reacher.json         # smoke run
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import tyro

import rla_gym  # noqa: F401  (registers the RLAWorld-* ids)
from rla_gym.cli.evaluate import SB3SavedPolicy, load_sb3_model
from rla_gym.envs.body import resolve_obs_mode, space_reads_body
from rla_gym.envs.rla_world import RLAWorldConfig, resolve_artifacts
from rla_gym.evaluation.real import RealEvalConfig, SavedPolicy, evaluate_in_sim
from rla_gym.planning import PlannerConfig, PlannerPolicy
from rla_gym.utils import load_json, provenance, save_json
from rla_gym.utils.io import to_jsonable
from rla_gym.utils.provenance import rows_of_bundle

DREAM_ID = "RLAWorld-dmc-reacher-v0"
DEFAULT_OUT = Path("benchmarks/results/rl_in_dream_reacher.json")


@dataclass(frozen=True)
class Args:
    artifacts: str | None = None
    """reacher bundle (default: the embedded rla_gym/envs/assets/dmc-reacher)"""
    arms: tuple[str, ...] = ("random", "bc", "dream", "real", "planner")
    """which arms to run (results of arms not run are kept from the existing JSON)"""
    budget_min: float = 10.0
    """PPO training budget per arm, in minutes of this process's CPU time (issue limit: 30)"""
    episodes: int = 50
    """real evaluation episodes per arm (seeds eval_seed + i, the same for every arm)"""
    eval_seed: int = 10_000
    """first evaluation seed (training resets draw their seeds elsewhere)"""
    action_mode: Literal["chunk", "repeat"] = "repeat"
    """PPO's action interface in both PPO arms: a K x A chunk or one action held K steps"""
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
    """discount (both arms; episodes are a handful of chunks)"""
    flow_steps: int = 10
    """Euler steps of the world model per dreamed step"""
    residual_ppo_steps: int = 12_288
    """dreamed chunks (summed over envs) of the ``bc+ppo`` arm's residual PPO (Lift/LIBERO's)"""
    residual_scale: float = 0.1
    """largest change the ``bc+ppo`` arm's residual may make to each normalised action (the
    main job's, paper: 0.1)"""
    residual_lr: float = 1e-4
    """learning rate of the ``bc+ppo`` arm's residual PPO (the main job's, paper: 1e-4)"""
    planner_samples: int = 64
    """CEM candidates per iteration of the planner arm"""
    planner_horizon: int = 2
    """chunks per candidate sequence of the planner arms"""
    planner_residual: float = 0.2
    """the planner searches residuals of this size around the bundle's BC chunks (0: from
    scratch in [-1, 1])"""
    planner_world_model: str | None = None
    """world-model checkpoint of the ``planner-wm`` arm (same encoder as the bundle)"""
    planner_base: str | None = None
    """a ``bc+ppo`` or ``dream`` arm of the result file whose policy the planner arms search
    residuals around instead of the bundle's base (run that arm first); the row records it. A
    ``dream`` arm's PPO was trained from scratch, so a planner around it uses no demonstration"""
    reward_mode: Literal["aligned", "goal", "progress"] | None = None
    """dreamed reward of the dream-trained PPO and the planners (default: the env's)"""
    obs_mode: Literal["auto", "patch", "features+proprio"] = "auto"
    """what the PPO arms see: features+proprio (the body beside the features; needs a bundle
    that dreams it), patch (features only) or auto (features+proprio on such a bundle)"""
    policy_input: Literal["features", "goal"] = "features"
    """how the PPO arms read the features: ``features`` pools them (SB3PatchExtractor); ``goal``
    reads them through the bundle's frozen goal readout (SB3GoalExtractor: the body_goal progress
    head's goal, the body in its space, their gap and the body; needs a bundle that dreams the
    body and has such a head), the same lens in the dream and in reality"""
    goal_head: str | None = None
    """with ``policy_input=goal``: the progress head (or bundle) whose goal readout the policy
    reads, when it is not the one the dream's reward reads (default: the bundle's own). E.g.
    reacher's joint-space head, whose joint-angle errors a policy learns from, as the lens, beside
    an effector-goal head, the sharper goal, as the reward"""
    group_size: int = 1
    """the ``dream`` arm's envs in groups of this many that share their start and the dream's
    flow noise, with advantages relative to the group (SB3 GroupRelativeAdvantages, the main
    job's optimiser fix; 1: plain PPO); must divide dream_envs"""
    reset_starts: str | None = None
    """a dataset folder (same task, encoded with the bundle's encoder) whose episodes' first
    frames are the ``dream`` and ``bc+ppo`` arms' training starts instead of the bundle's reset
    bank (16 on reacher: 16 targets); the row records it"""
    tag: str = ""
    """names the arms run here (all but random) ``<arm> <tag>``: their own rows, models and
    logs"""
    seed: int = 0
    """seed of SB3, the training resets and the planner"""
    runs: Path = Path("runs/rl_in_dream_reacher")
    """trained models and per-episode evaluation logs (resumable)"""
    out: Path | None = None
    """result file (default: benchmarks/results/rl_in_dream_reacher.json, the embedded bundle's;
    required for a bundle built at another time)"""


# The goal-readout policy's network: a handful of inputs, so a wider MLP than the pooled
# features' (whose extractor already mixes 32,768 numbers). Shared with reacher_policy_input.py.
GOAL_POLICY = {"net_arch": [256, 256], "log_std_init": -0.5}


def _ppo(env: Any, args: Args, bundle: Path) -> Any:
    from stable_baselines3 import PPO

    from rla_gym.sb3 import goal_policy_kwargs, patch_policy_kwargs

    # SB3PatchExtractor pools the features of either; with the body it appends it.
    body = space_reads_body(env.observation_space, "the PPO arm")
    if args.policy_input == "goal":
        kwargs = goal_policy_kwargs(args.goal_head or bundle, **GOAL_POLICY)
    else:
        kwargs = patch_policy_kwargs(log_std_init=-0.5)
    return PPO(
        "MultiInputPolicy" if body else "MlpPolicy", env, n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=args.n_epochs, learning_rate=args.learning_rate, gamma=args.gamma,
        policy_kwargs=kwargs, seed=args.seed, device="cpu", verbose=0,
    )  # fmt: skip


# Options of the dream-trained PPO arm only (the real arm records None for each).
DREAM_OPTIONS = ("reward_mode", "reset_starts", "flow_steps", "group_size")

# Arms whose result depends on the bundle's dream or policy; random and real depend only on the
# bundle's chunk and horizon.
BUNDLE_ARMS = ("dream", "bc", "bc+ppo", "planner", "planner-wm")


def _bundle_arm(name: str) -> bool:
    return name.split(" ")[0] in BUNDLE_ARMS  # tagged variants: "<arm> <tag>"


def arm_dir(args: Args, man: dict[str, Any], name: str) -> Path:
    """Where an arm keeps its model and resumable evaluation log: per bundle for the arms that use
    it, so a rebuilt bundle never resumes, or reuses the model of, the previous one."""
    if _bundle_arm(name):
        return args.runs / man["created_utc"].replace(":", "") / name.replace(" ", "_")
    return args.runs / name


def arm_obs_mode(args: Args, bundle: Path) -> str:
    """What the PPO arms see on ``bundle``: ``--obs-mode`` resolved by the dreamed env's rule
    (``auto``: ``features+proprio`` when the bundle's world model dreams the body; a bank that
    carries bodies beside a features-only world model does not count).

    Raises:
        ValueError: ``features+proprio`` on a bundle whose world model dreams features only.
    """
    from rla_gym.envs.artifacts import load_artifacts

    model = load_artifacts(bundle).load_world_model()
    return resolve_obs_mode(args.obs_mode, tuple(getattr(model, "proprio_fields", ())), bundle)


def train_arm(
    name: str, args: Args, bundle: Path, man: dict[str, Any], mode: str
) -> dict[str, Any]:
    """Train PPO in the dream or in the real simulator for the CPU budget, seeing observations
    of ``mode`` (``patch`` or ``features+proprio``); save it under runs.

    Raises:
        ValueError: a model kept under runs from an earlier run reads another observation.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    from rla_gym.envs.real import RealFeatureEnv
    from rla_gym.sb3 import BudgetCallback, SB3VecEnvAdapter

    path = arm_dir(args, man, name) / "ppo"
    record = path.with_name("train.json")
    dream = name.split(" ")[0] == "dream"
    # What makes a trained model this arm's: a kept one trained otherwise is refused, not reused
    # under this run's labels (records from before an option existed hold its default).
    wanted = {"obs_mode": mode, "action_mode": args.action_mode, "budget_min": args.budget_min,
              "policy_input": args.policy_input, "goal_head": args.goal_head,
              **{k: getattr(args, k) if dream else None for k in DREAM_OPTIONS}}  # fmt: skip
    if record.exists() and path.with_suffix(".zip").exists():
        space = load_sb3_model(path.with_suffix(".zip")).observation_space
        # a record from before an option existed: the option's default (none for the real arm)
        default = {k: None if k in DREAM_OPTIONS and not dream else getattr(Args, k, None)
                   for k in wanted}  # fmt: skip
        kept = {k: load_json(record).get(k, default[k]) for k in wanted}
        kept["obs_mode"] = "features+proprio" if space_reads_body(space, str(path)) else "patch"
        changed = [f"{k}={kept[k]!r} there, {wanted[k]!r} here" for k in wanted
                   if kept[k] != wanted[k]]  # fmt: skip
        if changed:
            raise ValueError(
                f"[{name}] the model kept in {path.parent} was trained with other options "
                f"({'; '.join(changed)}); give this variant its own --tag (or --runs), or "
                "delete that folder to retrain"
            )
        print(f"[{name}] trained model found in {path.parent}; delete it to retrain", flush=True)
        return load_json(record)
    if dream:
        extra: dict[str, Any] = {} if args.reward_mode is None else {
            "reward_mode": args.reward_mode}  # fmt: skip
        if args.reset_starts is not None:
            extra["reset_starts"] = args.reset_starts
        venv = gym.make_vec(DREAM_ID, num_envs=args.dream_envs,
                            vectorization_mode="vector_entry_point", artifacts=str(bundle),
                            flow_steps=args.flow_steps, action_mode=args.action_mode,
                            obs_mode=mode, **extra)  # fmt: skip
        env = VecMonitor(SB3VecEnvAdapter(venv.unwrapped, group_size=args.group_size))
    else:
        kw = dict(sim=man["sim"], task=man["task"], resolution=int(man["resolution"]),
                  encoder=man["encoder"], chunk=int(man["chunk"]), action_mode=args.action_mode,
                  max_episode_steps=int(man["max_episode_steps"]), obs_mode=mode)  # fmt: skip
        env = VecMonitor(DummyVecEnv([lambda: RealFeatureEnv(**kw)] * args.real_envs))
    env.seed(args.seed)
    model = _ppo(env, args, bundle)
    cb = BudgetCallback(args.budget_min * 60.0, points=1, clock="cpu")
    callbacks: list[Any] = [cb]
    if dream and args.group_size > 1:
        from rla_gym.sb3 import GroupRelativeAdvantages

        callbacks.append(GroupRelativeAdvantages(args.group_size))
    print(f"[{name}] training for {args.budget_min:g} CPU-minutes ...", flush=True)
    t0 = time.perf_counter()
    model.learn(total_timesteps=10**12, callback=callbacks)
    wall = time.perf_counter() - t0
    env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path))
    out = {
        "train_minutes": cb.elapsed() / 60.0,
        "train_wall_minutes": wall / 60.0,
        "timesteps": int(model.num_timesteps),
        "train_curve": cb.train_curve,
        **wanted,
    }
    save_json(out, record)
    print(
        f"[{name}] {out['timesteps']} env steps in {out['train_minutes']:.1f} CPU-min", flush=True
    )
    return out


@dataclass(frozen=True)
class RandomChunks:
    """Picklable factory of the uniform random policy (seeded per worker)."""

    size: int
    seed: int

    def __call__(self) -> Any:
        rng = np.random.default_rng(self.seed)
        return lambda _features: rng.uniform(-1, 1, self.size).astype(np.float32)


def evaluate_arm(name: str, factory: Any, args: Args, man: dict[str, Any]) -> dict[str, Any]:
    """``args.episodes`` real episodes of ``factory``'s policy (resumable log under runs)."""
    chunk, horizon = int(man["chunk"]), int(man["max_episode_steps"])
    cfg = RealEvalConfig.for_bundle(man, episodes=args.episodes, max_steps=horizon * chunk,
                                    workers=1, seed=args.eval_seed)  # fmt: skip
    log = arm_dir(args, man, name) / "eval.jsonl"
    res = evaluate_in_sim(factory, cfg, progress=False, resume=log,
                          identity={"arm": name, "policy": to_jsonable(factory)})  # fmt: skip
    print(f"[{name}] real success {res['successes']}/{res['episodes']}, "
          f"return {res['mean_return']:.2f}", flush=True)  # fmt: skip
    return {"success": res["successes"], "episodes": res["episodes"],
            "return": res["mean_return"], "wilson95": res["wilson95"],
            "mean_decision_s": res["mean_decision_s"],
            "per_episode_success": [bool(r["success"]) for r in res["rows"]]}  # fmt: skip


def result_file(args: Args, man: dict[str, Any]) -> Path:
    """``--out``, or the shipped file when it holds this bundle's rows, does not exist yet, or
    this is the embedded bundle (rebuilt: the older bundle's rows move under ``superseded``).

    Raises:
        ValueError: no ``--out`` for another bundle than the embedded one, built at another time
            than the shipped file's.
    """
    if args.out is not None:
        return args.out
    if args.artifacts is not None and DEFAULT_OUT.exists():
        shipped = load_json(DEFAULT_OUT).get("bundle_created_utc")
        if shipped not in (None, man["created_utc"]):
            raise ValueError(
                f"{DEFAULT_OUT} holds the rows of the bundle built at {shipped}; this bundle was "
                f"built at {man['created_utc']}: pass its own --out (running into the shipped "
                "file would move its rows under 'superseded')"
            )
    return DEFAULT_OUT


def main(args: Args) -> dict[str, Any]:
    torch.set_num_threads(1)
    if args.goal_head is not None and args.policy_input != "goal":
        raise ValueError("--goal-head names the goal readout of --policy-input goal; add it")
    bundle = resolve_artifacts(args.artifacts, "dmc-reacher")
    man = load_json(bundle / "manifest.json")
    out_path = result_file(args, man)
    old = load_json(out_path) if out_path.exists() else {}
    # Another bundle's rows are kept for the record, never beside this bundle's. Random and real
    # stay valid while the bundle's chunk and horizon (what they are judged with) are the same.
    same_episodes = (old.get("chunk"), old.get("horizon_chunks")) == (
        int(man["chunk"]), int(man["max_episode_steps"]))  # fmt: skip
    arms, superseded = rows_of_bundle(
        old, man["created_utc"], "arms",
        still_valid=lambda k: same_episodes and not _bundle_arm(k),
    )  # fmt: skip
    size = int(man["chunk"]) * int(man["action_dim"])
    for arm in args.arms:
        t0 = time.perf_counter()
        name = f"{arm} {args.tag}" if args.tag and arm != "random" else arm
        if arm in ("dream", "real"):
            mode = arm_obs_mode(args, bundle)
            if arm == "real" and mode != "patch":
                # its own model and log beside the features-only arm
                name = f"real {mode}" + (f" {args.tag}" if args.tag else "")
            train = train_arm(name, args, bundle, man, mode)
            # A policy that reads the body is shown the real one (SB3FeaturePolicy.reads_body).
            row = evaluate_arm(
                name, SB3SavedPolicy(str(arm_dir(args, man, name) / "ppo.zip")), args, man
            )
            row.update(
                train_minutes=train["train_minutes"],
                timesteps=train["timesteps"],
                train_wall_minutes=train["train_wall_minutes"],
                obs_mode=mode,
                train_curve=train["train_curve"],  # mean return of the last episodes per rollout
            )
            row["action_mode"] = args.action_mode
            row["policy_input"] = args.policy_input
            if args.goal_head is not None:
                row["goal_head"] = args.goal_head
            if arm == "dream":
                row["reward_mode"] = args.reward_mode or RLAWorldConfig.reward_mode
                row["reset_starts"] = args.reset_starts  # None: the bundle's reset bank
                row["flow_steps"] = args.flow_steps
                row["group_size"] = args.group_size
        elif arm == "random":
            row = {
                **evaluate_arm(name, RandomChunks(size, args.seed), args, man),
                "train_minutes": 0.0,
            }
        elif arm == "bc":
            row = {
                **evaluate_arm(name, SavedPolicy(str(bundle / "policy")), args, man),
                "method": (man.get("policy") or {}).get("method") or "bc",
                "train_minutes": None,
            }  # trained with the bundle (see its build record)
        elif arm == "bc+ppo":
            from rla_gym.pipelines.wmrl import WMRLConfig, run_wmrl

            run = run_wmrl(WMRLConfig(
                suite="dmc-reacher", artifacts=str(bundle), out=arm_dir(args, man, name) / "wmrl",
                ppo_steps=args.residual_ppo_steps, reward_mode=args.reward_mode, eval_episodes=0,
                residual_scale=args.residual_scale, learning_rate=args.residual_lr,
                reset_starts=args.reset_starts, videos=0, seed=args.seed, device="cpu",
                progress=False,
            ))  # fmt: skip
            final = run["policies"]["bc+ppo"]
            row = {
                **evaluate_arm(name, SavedPolicy(final["path"]), args, man),
                "train_minutes": run["ppo"]["wall_clock_s"] / 60,
                "timesteps": run["ppo"]["env_steps"],
                "reward_mode": args.reward_mode or RLAWorldConfig.reward_mode,
                "dream_success_rate": final["dream"]["success_rate"],
                "dream_bc_success_rate": run["policies"]["bc"]["dream"]["success_rate"],
                "dream_return": final["dream"]["mean_return"],
                "dream_bc_return": run["policies"]["bc"]["dream"]["mean_return"],
                "dream_vs_bc": final["vs_bc"],
                "dream_starts": len(final["dream"]["starts"]),
                "policy": final["path"],
                "reset_starts": args.reset_starts,
                "residual_scale": args.residual_scale,
                "residual_lr": args.residual_lr,
            }
        elif arm in ("planner", "planner-wm"):
            pcfg = PlannerConfig(samples=args.planner_samples, horizon=args.planner_horizon,
                                 residual_scale=args.planner_residual, seed=args.seed)  # fmt: skip
            wm = args.planner_world_model if arm == "planner-wm" else None
            if arm == "planner-wm" and wm is None:
                raise ValueError("the planner-wm arm needs --planner-world-model <checkpoint>")
            base = None
            if args.planner_base is not None:  # another arm's saved policy, by its row's name
                base = arms.get(args.planner_base, {}).get("policy")
                kept = arm_dir(args, man, args.planner_base) / "ppo.zip"
                if base is None and args.planner_base.startswith("dream") and kept.is_file():
                    base = str(kept)  # PPO trained from scratch in the dream (an SB3 zip)
                if base is None or args.planner_base not in arms:
                    raise ValueError(
                        f"--planner-base {args.planner_base!r} is not a bc+ppo or dream arm with a "
                        f"saved policy in {out_path}; run that arm first (its row records its "
                        "policy)"
                    )
            policy = PlannerPolicy(str(bundle), pcfg, world_model=wm, reward_mode=args.reward_mode,
                                   base_policy=base)  # fmt: skip
            row = {
                **evaluate_arm(name, policy, args, man),
                "train_minutes": 0.0,
                "planner": dataclasses.asdict(pcfg),
                "reward_mode": policy.env_config().reward_mode,
                **({"world_model": wm} if wm else {}),
                **(
                    {"planner_base": args.planner_base, "planner_base_policy": base} if base else {}
                ),
            }
        else:
            raise ValueError(
                f"unknown arm {arm!r}; choose from random, bc, bc+ppo, dream, real, planner, "
                "planner-wm"
            )
        if args.artifacts is not None and (_bundle_arm(arm) or args.policy_input == "goal"):
            # Another bundle's models or reward head, or (a real arm) its goal readout.
            row["artifacts"] = str(args.artifacts)
        row["wall_minutes"] = (time.perf_counter() - t0) / 60.0
        arms[name] = row
        out = {
            "provenance": provenance(seed=args.seed, encoder=man["encoder_fingerprint"],
                                     device="cpu"),
            "task": f"{man['sim']}/{man['task']}", "bundle": str(bundle),
            "bundle_created_utc": man["created_utc"],
            "horizon_chunks": int(man["max_episode_steps"]), "chunk": int(man["chunk"]),
            "eval_seeds": [args.eval_seed, args.eval_seed + args.episodes - 1],
            "arms": arms, "config": to_jsonable(args),
            "targets": {"dream_success_min": 0.6, "planner_success_min": 0.8,
                        "dream_beats_real": True},
            "protocol": (
                "SB3 PPO with SB3PatchExtractor, identical hyper-parameters in the dream and "
                "real arms except the number of envs, each trained for the same CPU-time budget "
                "(one torch thread); every arm judged on the same real seeds, success = the "
                "finger touches the target within the bundle's horizon"
            ),
            **({"superseded": superseded} if superseded else {}),
        }  # fmt: skip
        save_json(out, out_path)  # after every arm, so a failing later arm keeps it
    return load_json(out_path)


if __name__ == "__main__":
    main(tyro.cli(Args))
