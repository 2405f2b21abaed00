"""The runner: resume gives the uninterrupted result; checkpoints are verified; DDP == one process."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmrag.common.errors import UnknownNameError
import torch
from safetensors.torch import load_file

from mmrag.runners.checkpoint import CorruptCheckpointError, list_checkpoints
from toy_task import train

HERE = Path(__file__).resolve().parent


@pytest.fixture()
def model_cfg(tiny_model_cfg):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg["lora"]["dropout"] = 0.1  # dropout draws random numbers: resume must restore the RNG
    return cfg


def _final_weights(out: Path):
    return load_file(str(list_checkpoints(out)[-1] / "trainable.safetensors"))


def test_six_steps_equal_three_plus_resume_plus_three(model_cfg, tmp_path):
    full = train(model_cfg, tmp_path / "full", tmp_path / "img", max_steps=6, save_every=3)
    train(model_cfg, tmp_path / "half", tmp_path / "img", max_steps=6, save_every=3, iters_per_epoch=None)
    # simulate an interruption: drop the step-6 checkpoint, resume from step 3
    import shutil

    shutil.rmtree(tmp_path / "half" / "ckpt_step00000006")
    resumed = train(model_cfg, tmp_path / "half", tmp_path / "img", max_steps=6, save_every=3, resume="auto")
    assert [h["step"] for h in resumed["history"]] == [4, 5, 6]
    assert [h["loss"] for h in resumed["history"]] == pytest.approx([h["loss"] for h in full["history"][3:]], abs=1e-6)
    a, b = _final_weights(tmp_path / "full"), _final_weights(tmp_path / "half")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    losses = [h["loss"] for h in full["history"]]
    assert losses[-1] < losses[0]  # it learns


def test_corrupt_checkpoint_is_refused_by_name(model_cfg, tmp_path):
    train(model_cfg, tmp_path / "run", tmp_path / "img", max_steps=2, save_every=1, keep_checkpoints=3)
    newest = list_checkpoints(tmp_path / "run")[-1]
    (newest / "trainable.safetensors").write_bytes(b"garbage")
    with pytest.raises(CorruptCheckpointError, match=newest.name):
        train(model_cfg, tmp_path / "run", tmp_path / "img", max_steps=4, resume="auto")
    assert len(list_checkpoints(tmp_path / "run")) == 2  # nothing deleted


def test_two_process_gloo_matches_one_process(tmp_path):
    # the repo first, then whatever the environment already puts on the path (packages installed there)
    path = os.pathsep.join(p for p in (str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    for n in (1, 2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_port",
               str(29500 + n), str(HERE / "toy_task.py"), str(tmp_path / f"p{n}"), "3"]
        subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
    one = json.loads((tmp_path / "p1" / "history.json").read_text())
    two = json.loads((tmp_path / "p2" / "history.json").read_text())
    assert len(one) == 3 and two == pytest.approx(one, rel=1e-5)
    a, b = _final_weights(tmp_path / "p1"), _final_weights(tmp_path / "p2")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_bad_run_choices_fail_before_building(model_cfg, tmp_path):
    from mmrag.common.config import ConfigError

    with pytest.raises(ConfigError, match="run.amp='bf17' is not one of no, bf16, fp16"):
        train(model_cfg, tmp_path / "run", tmp_path / "img", max_steps=1, amp="bf17")
    with pytest.raises(UnknownNameError, match="linear_warmup_cosine"):
        train(model_cfg, tmp_path / "run", tmp_path / "img", max_steps=1, lr_sched="cosine_warmup")
