"""One renderer per benchmark: each turns its ``benchmarks/results/*.json`` into Markdown.

``BLOCKS`` maps a block name to its renderer; ``benchmarks/report.py`` writes the renderer's
text between ``<!-- BENCH:name -->`` and ``<!-- /BENCH:name -->`` wherever the block is placed
(``README.md`` or a page in ``docs/``). Links in the text are relative to the repository root;
the report moves them to the page they land in.
"""

from __future__ import annotations

from collections.abc import Callable

from .body_state import (
    body_dynamics,
    body_policy,
    body_state,
    goal_readout,
    reacher_policy_input,
)
from .bundles import bundles
from .closed_loop import (
    closed_loop,
    closed_loop_calibration,
    closed_loop_compare,
    closed_loop_variants,
)
from .counterfactual import counterfactual
from .decoder import decoder
from .dream_vs_real import dream_vs_real
from .experts import expert_success
from .fidelity import fidelity, rla_decoder_target
from .levers import branch_fit, faithfulness_levers
from .planning import planner_oracle, planner_real
from .ppo_in_dream import exploit_signal, main_job, ppo_in_dream
from .reacher_observation import reacher_observation
from .reward import reward_ranking, reward_samples, reward_signal, success_estimate
from .rl_in_dream import rl_in_dream_manip, rl_in_dream_reacher
from .speed import dream_speed, encoder_throughput, sim_throughput
from .world_action_model import world_action_model

BLOCKS: dict[str, Callable[[], str]] = {
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
    "dream_speed_body": lambda: dream_speed("dream_speed_body.json"),
    "reward_samples": reward_samples,
    "reward_signal": reward_signal,
    "exploit_signal": exploit_signal,
    "reacher_observation": reacher_observation,
    "rl_in_dream_reacher": rl_in_dream_reacher,
    "planner_oracle": planner_oracle,
    "reward_ranking": reward_ranking,
    "rl_in_dream_lift": lambda: rl_in_dream_manip("lift"),
    "rl_in_dream_libero": lambda: rl_in_dream_manip("libero"),
    "world_action_model": world_action_model,
    "decoder": decoder,
    "closed_loop": closed_loop,
    "closed_loop_body": lambda: closed_loop("closed_loop_body.json"),
    "closed_loop_compare": closed_loop_compare,
    "closed_loop_variants": closed_loop_variants,
    "closed_loop_calibration": closed_loop_calibration,
    "ppo_in_dream": ppo_in_dream,
    "main_job": main_job,
    "body_state": body_state,
    "body_policy": body_policy,
    "goal_readout": goal_readout,
    "reacher_policy_input": reacher_policy_input,
    "body_dynamics": body_dynamics,
}

__all__ = ["BLOCKS"]
