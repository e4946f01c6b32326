"""Main job: improve a BC policy with residual PPO inside the dreamed LIBERO env, then check the
result in the real LIBERO simulator.

    python examples/train_ppo_in_wm.py                      # ~15 min on 2 CPU cores, offline
    python examples/train_ppo_in_wm.py --ppo-steps 100000 --eval-episodes 50   # the longer run

Everything runs from the embedded default bundle (``rla_gym/envs/assets/libero``: world model,
reset bank, reference demos and the behaviour-cloned base policy). The script prints imagined and
real success side by side with Wilson 95% intervals and writes ``runs/wmrl/report.json``,
``curves.png`` and real-episode mp4s under ``videos/``. Re-running resumes PPO.
"""

from __future__ import annotations

import os

import tyro

from rla_gym.pipelines.wmrl import WMRLConfig, format_report, run_wmrl


def main(cfg: WMRLConfig) -> None:
    import torch

    # Two cores: PPO and the world model take one thread each while the real simulator workers
    # run, and nothing oversubscribes the machine.
    torch.set_num_threads(max(1, min(2, (os.cpu_count() or 2))))
    report = run_wmrl(cfg)
    print()
    print(f"{report['sim']} {report['task']} — dream: {report['bundle']}")
    print(format_report(report))
    ppo = report["ppo"]
    print(
        f"\nPPO: {ppo['env_steps']} dream env steps in {ppo['wall_clock_s'] / 60:.1f} min; "
        f"total {report['wall_clock_s'] / 60:.1f} min"
    )
    print(
        f"report: {cfg.out / 'report.json'}, {cfg.out / 'curves.png'}, videos in "
        f"{cfg.out / 'videos'}"
    )


if __name__ == "__main__":
    main(tyro.cli(WMRLConfig))
