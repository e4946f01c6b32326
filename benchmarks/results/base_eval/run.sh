#!/usr/bin/env bash
# The float32 BC + RLA head bases before they were quantised into the bundles (docs/benchmarks.md, "World
# action model"): trained on all labelled expert episodes with expert + noisy videos, then judged
# on the same real episodes as benchmarks/rl_in_dream_manip.py (LIBERO init states 0-49, Lift
# seeds 0-49).
set -euo pipefail
export MUJOCO_GL=egl OMP_NUM_THREADS=1
rla-gym train-bc --data data/libero_object_0 --out runs/base/libero/bc+rla \
  --rla runs/bundle/libero/rla/checkpoint --rla-head --seed 0
rla-gym train-bc --data data/robosuite_lift --out runs/base/lift/bc+rla \
  --rla runs/levers/robosuite-lift/rla-cw0-r32/checkpoint --rla-head --seed 0
rla-gym eval --policy runs/base/libero/bc+rla --sim libero --episodes 50 --workers 1 \
  --out benchmarks/results/base_eval/libero_bc+rla_float32.json
rla-gym eval --policy runs/base/lift/bc+rla --sim robosuite --task Lift --episodes 50 --workers 1 \
  --out benchmarks/results/base_eval/lift_bc+rla_float32.json
