"""bench/train_py_recipe.py run alone under torchrun: train.py's code path with DDP (or FSDP2) on 2 gloo processes,
the global batch split over them, tokens/s of the whole job from the runner's records."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("options", [["--distributed", "ddp"], ["--distributed", "fsdp", "--fsdp-frozen", "shard"]])
def test_two_processes_through_train_py(tmp_path, options):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "bench.train_py_recipe", "--toy", "--steps", "2", "--warmup", "2", "--work-dir", str(tmp_path), *options]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 only
    result = json.loads(lines[0])
    assert (result["world_size"], result["distributed"], result["global_batch"]) == (2, options[1], 4)
    frozen = options[3] if len(options) > 2 else None
    assert result["fsdp_frozen"] == frozen
    saved = (tmp_path / "run" / "config.yaml").read_text()  # the run option reached the runner
    assert f"distributed: {options[1]}" in saved and (frozen is None or f"fsdp_frozen: {frozen}" in saved)
    assert result["tokens_per_s"] == pytest.approx(4 * result["seq_len"] / (result["step_ms"] / 1e3), rel=1e-3)
    assert math.isfinite(result["final_loss"])
    # the runner's own records: warm-up and timed intervals of 2 steps each, 4 steps in all
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "step" in r and "loss" in r]
    assert steps[-2:] == [2, 4]
