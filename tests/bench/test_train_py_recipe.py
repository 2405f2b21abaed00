"""bench/train_py_recipe.py run alone under torchrun: train.py's code path with DDP on 2 gloo processes,
the global batch split over them, tokens/s of the whole job from the runner's records."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_ddp_through_train_py(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "bench.train_py_recipe", "--toy", "--steps", "2", "--warmup", "2", "--work-dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 only
    result = json.loads(lines[0])
    assert (result["world_size"], result["distributed"], result["global_batch"]) == (2, "ddp", 4)
    assert result["tokens_per_s"] == pytest.approx(4 * result["seq_len"] / (result["step_ms"] / 1e3), rel=1e-3)
    assert math.isfinite(result["final_loss"])
    # the runner's own records: warm-up and timed intervals of 2 steps each, 4 steps in all
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "step" in r and "loss" in r]
    assert steps[-2:] == [2, 4]
