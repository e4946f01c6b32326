#!/bin/bash
cd /work/wt-plan
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 MUJOCO_GL=egl
E="python -m rla_gym.cli.main eval --sim dmc --episodes 10 --max-steps 64 --workers 1 --no-progress"
$E --policy random --out /tmp/plan_bench/reacher_random.json
$E --policy rla_gym/envs/assets/dmc-reacher/policy --out /tmp/plan_bench/reacher_bc.json
$E --policy plan --out /tmp/plan_bench/reacher_plan.json
$E --policy plan --residual-scale 0.2 --out /tmp/plan_bench/reacher_plan_res.json
