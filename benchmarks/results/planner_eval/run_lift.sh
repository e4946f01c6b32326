#!/bin/bash
cd /tmp/plan_snapshot
export PYTHONPATH=/tmp/plan_snapshot OMP_NUM_THREADS=1 MUJOCO_GL=egl
E="python -m rla_gym.cli.main eval --sim robosuite --episodes 10 --workers 1 --no-progress"
$E --policy random --out /tmp/plan_bench/lift_random.json
$E --policy rla_gym/envs/assets/robosuite-lift/policy --out /tmp/plan_bench/lift_bc.json
$E --policy plan --residual-scale 0.2 --out /tmp/plan_bench/lift_plan_res.json
$E --policy plan --out /tmp/plan_bench/lift_plan.json
