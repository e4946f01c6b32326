#!/usr/bin/env bash
# Rebuild the embedded default bundle of one dreamed env from scratch, with the project's own
# collectors and CLI: collect -> encode -> train RLA -> train RLA-WM -> behaviour-cloned base
# policy -> frame decoder -> bundle in rla_gym/envs/assets/<suite>/.
#
#   bash examples/build_bundle.sh libero            # RLAWorld-libero-v0
#   bash examples/build_bundle.sh robosuite-lift    # RLAWorld-robosuite-lift-v0
#   bash examples/build_bundle.sh dmc-reacher       # RLAWorld-dmc-reacher-v0
#
# Every step resumes where it stopped (collection skips recorded episodes, trainers resume from
# their checkpoints; train-bc simply retrains, ~2 min), so an interrupted build continues when
# re-run. Wall-clock on 2 CPU cores is
# in docs/reproduce.md ("Rebuild the bundles").
set -euo pipefail
suite=${1:?usage: build_bundle.sh libero|robosuite-lift|dmc-reacher}

runs=runs/bundle/$suite
head_flags=()
body_steps=0  # > 0: warm-start a world model that dreams the robot's body too, and ship it
case "$suite" in
  libero)
    sim=libero; task=libero_object/0; data=data/libero_object_0
    collect=("expert 50" "noisy 50" "play 20 150"); rla_steps=1500; wm_steps=8000
    # 3 demos and 32 render frames make room for the linear path (+1.1 MB) under 10 MB.
    bundle_flags=(--num-reference-demos 3 --max-render-frames 32) ;;
  robosuite-lift)
    sim=robosuite; task=Lift; data=data/robosuite_lift
    # The levers' dataset (docs/studies.md, "Which levers make the dream follow the action?").
    collect=("expert 60" "noisy 31" "random 15 80"); rla_steps=1000; wm_steps=8000
    bundle_flags=(--num-reference-demos 4 --max-render-frames 64) ;;
  dmc-reacher)
    # Every reacher episode has its own target, so each start is aligned only with its own demo.
    sim=dmc; task=reacher-easy; data=data/dmc_reacher_easy
    collect=("expert 150" "noisy 100" "play 40 100"); rla_steps=1500; wm_steps=8000
    # 16 demos and 16 render frames make room for the linear path (+1.1 MB) under 10 MB.
    bundle_flags=(--num-reference-demos 16 --reset-from references --max-render-frames 16)
    # The dream carries the arm's body (docs/body.md); its success estimate and progress reward
    # is the goal-body head: the distance of the joint angles to the goal pose read off the scene.
    body_steps=1000
    head_flags=(--token-dim 16 --hidden 64 --proprio --target body_goal --goal-frame last_success
                --goal-fields shoulder_sin shoulder_cos wrist_sin wrist_cos) ;;
  *) echo "unknown suite $suite (libero, robosuite-lift, dmc-reacher)" >&2; exit 2 ;;
esac

for spec in "${collect[@]}"; do
  read -r policy episodes max_steps <<<"$spec"
  rla-gym collect --sim "$sim" --task "$task" --policy "$policy" --episodes "$episodes" \
    ${max_steps:+--max-steps "$max_steps"} --workers 2 --out "$data"
done
rla-gym encode --data "$data"

# One torch thread per job: on two cores, two builds side by side use the machine best.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# The RLA's linear path (rank 32, initialised to the residuals' principal components) keeps
# what the action changes; the world model flows on its latent at one scale, not whitened.
rla-gym train-rla --data "$data" --out "$runs/rla" --decoder-target residual --width 96 --depth 2 \
  --linear-rank 32 --steps "$rla_steps" --val-pairs 64 --ckpt-every 250 --no-progress
rla-gym train-wm --model rla-wm --data "$data" --rla "$runs/rla/checkpoint" --out "$runs/wm" \
  --preset cpu-compact --latent-norm scalar --latent-scale 1 --steps "$wm_steps" \
  --ckpt-every 250 --no-progress
wm="$runs/wm/checkpoint"
if [ "$body_steps" -gt 0 ]; then
  # Warm-started: the body's projection starts at zero, so this model starts as the one above.
  rla-gym train-wm --model rla-wm --data "$data" --proprio --init-from "$wm" --out "$runs/wm_body" \
    --steps "$body_steps" --val-every 500 --ckpt-every 250 --no-progress
  wm="$runs/wm_body/checkpoint"
fi
# The base policy is the world action model (BC + RLA head): the same labelled expert episodes,
# plus the RLA latents of expert and noisy videos (docs/design.md, "World action model: BC + RLA head").
rla-gym train-bc --data "$data" --out "$runs/bc" --device cpu --rla "$runs/rla/checkpoint" \
  --rla-head
rla-gym train-decoder --data "$data" --out "$runs/decoder" --steps 500 --no-progress
rla-gym build-bundle --data "$data" --world-model "$wm" \
  --policy "$runs/bc" --weights-dtype int8 "${bundle_flags[@]}" --out "rla_gym/envs/assets/$suite"
# The decoder goes in last: add-decoder checks it against the bundle and keeps it under 10 MB.
rla-gym add-decoder --bundle "rla_gym/envs/assets/$suite" --decoder "$runs/decoder/checkpoint"
# The progress / success head (reward_mode="progress"; the env's success estimate) learns from
# every episode kind of the dataset, failures included.
rla-gym train-progress --data "$data" --out "$runs/progress" --no-progress \
  "${head_flags[@]}"
rla-gym add-progress-head --bundle "rla_gym/envs/assets/$suite" --head "$runs/progress/checkpoint"

