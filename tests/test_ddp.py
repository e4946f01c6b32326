"""Two-process CPU DDP through torchrun: identical weights on both ranks, and learning happens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    import numpy as np
    import torch
    import torch.distributed as dist

    from rla_gym.data.windows import PairSampler
    from rla_gym.rla import RLAAutoencoder, RLAConfig
    from rla_gym.rla.train import _rla_loss
    from rla_gym.utils.training import TrainerConfig, dist_info, fit

    torch.set_num_threads(1)  # two ranks on a shared 2-core machine
    out = Path(sys.argv[1])
    rng = np.random.default_rng(0)
    eps = []
    for _ in range(3):
        walk = rng.normal(size=(21, 6, 8)).astype(np.float32).cumsum(0) * 0.3
        eps.append((walk, rng.normal(size=(20, 2)).astype(np.float32)))
    cfg = RLAConfig(feature_dim=8, num_tokens=6, latent_tokens=2, latent_dim=4, width=32,
                    depth=1, heads=2, mlp_ratio=2.0, max_gap=4)
    # Different seeds per rank on purpose: DDP must broadcast rank 0's initial weights.
    torch.manual_seed(dist_info().rank)
    model = RLAAutoencoder(cfg)
    sampler = PairSampler(eps, 1, 4, seed=0)
    probe = PairSampler(eps, 1, 4, seed=99).sample(32)

    def probe_loss(m):
        with torch.no_grad():
            return m.loss(probe["s_t"], probe["s_th"])[0].item()

    tcfg = TrainerConfig(steps=40, batch_size=8, learning_rate=3e-3, ckpt_every=20, val_every=1000,
                         log_every=10, progress=False, tensorboard=False, device="cpu")
    init_probe = probe_loss(model)
    res = fit(model, _rla_loss, sampler, tcfg, out / "run", cfg.to_dict())
    info = dist_info()
    # DDP trains the module in place: rank 0's initial weights, all-reduced gradients.
    torch.save(model.state_dict(), out / f"rank{info.rank}.pt")
    (out / f"rank{info.rank}.json").write_text(json.dumps({
        "init_probe": init_probe, "final_probe": probe_loss(model),
        "sampler_seed": sampler.state_dict()["seed"], "step": res.step,
    }))
    dist.barrier()
    dist.destroy_process_group()
    """
)


def test_ddp_two_cpu_ranks(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0, msg=k)
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["step"] == r1["step"] == 40
    assert r0["sampler_seed"] != r1["sampler_seed"]  # each rank draws its own batches
    assert r0["final_probe"] == r1["final_probe"]
    assert r0["final_probe"] < 0.7 * r0["init_probe"], r0  # rank 0's init is the shared init
    # Only rank 0 logs (4 events, not 8) and writes the checkpoint.
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").exists()
