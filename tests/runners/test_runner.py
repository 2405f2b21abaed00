"""The runner: resume gives the uninterrupted result (weights and metrics log); checkpoints are verified;
DDP and FSDP2 over 2 gloo processes == one process; the logged loss is the mean of the per-step losses."""
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
from tests.runners.toy_task import train

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]


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


def _torchrun(out: Path, n: int, steps: int, *options: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
           "-m", "tests.runners.toy_task", str(out), str(steps), *options]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _ranks_that_ran(out: Path):
    return sorted((json.loads(p.read_text())["rank"], json.loads(p.read_text())["world_size"])
                  for p in (out / "ranks").glob("*.json"))


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_process_gloo_matches_one_process(tmp_path, strategy):
    """Each process reads half of every global batch; the gradient is normalised over the global batch,
    so losses and weights equal one process reading it all (one process under fsdp: a group of one)."""
    _torchrun(tmp_path / "p1", 1, 3, f"distributed={strategy}")
    _torchrun(tmp_path / "p2", 2, 3, f"distributed={strategy}")
    assert _ranks_that_ran(tmp_path / "p1") == [(0, 1)]
    assert _ranks_that_ran(tmp_path / "p2") == [(0, 2), (1, 2)]  # both ranks ran, in one job of two
    one = json.loads((tmp_path / "p1" / "history.json").read_text())
    two = json.loads((tmp_path / "p2" / "history.json").read_text())
    assert len(one) == 3 and two == pytest.approx(one, rel=1e-5)
    a, b = _final_weights(tmp_path / "p1"), _final_weights(tmp_path / "p2")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_metrics_log_after_a_kill_and_resume_holds_each_step_once(model_cfg, tmp_path):
    """A run killed after its step-3 checkpoint, having logged steps 4-5, resumes with run.resume=auto:
    the log then holds steps 1..6 once each, and the same losses as an uninterrupted run."""
    full = train(model_cfg, tmp_path / "full", tmp_path / "img", max_steps=6, save_every=3)
    run = tmp_path / "killed"
    train(model_cfg, run, tmp_path / "img", max_steps=6, save_every=3)
    import shutil

    shutil.rmtree(run / "ckpt_step00000006")  # the kill came before the step-6 checkpoint ...
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:5]) + "\n" + lines[5][:7])  # ... while writing step 6
    train(model_cfg, run, tmp_path / "img", max_steps=6, save_every=3, resume="auto")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in records] == pytest.approx([h["loss"] for h in full["history"]], abs=1e-6)


def test_logged_loss_is_the_mean_of_the_step_losses(model_cfg, tmp_path):
    """log_every=3: one record per 3 steps, whose loss is the plain mean of the 3 per-step losses of a
    run that logs every step (same seed, same steps); the last record covers the leftover steps."""
    every = train(model_cfg, tmp_path / "every", tmp_path / "img", max_steps=7, save_every=100)
    grouped = train(model_cfg, tmp_path / "grouped", tmp_path / "img", max_steps=7, save_every=100, log_every=3)
    per_step = [h["loss"] for h in every["history"]]
    assert [(r["step"], r["steps"]) for r in grouped["history"]] == [(3, 3), (6, 3), (7, 1)]
    expected = [sum(per_step[0:3]) / 3, sum(per_step[3:6]) / 3, per_step[6]]
    assert [r["loss"] for r in grouped["history"]] == pytest.approx(expected, rel=1e-6)
    assert sum(r["tokens"] for r in grouped["history"]) == sum(h["tokens"] for h in every["history"])


def test_bad_run_choices_fail_before_building(model_cfg, tmp_path):
    from mmrag.common.config import ConfigError

    with pytest.raises(ConfigError, match="run.amp='bf17' is not one of no, bf16, fp16"):
        train(model_cfg, tmp_path / "run", tmp_path / "img", max_steps=1, amp="bf17")
    with pytest.raises(UnknownNameError, match="linear_warmup_cosine"):
        train(model_cfg, tmp_path / "run", tmp_path / "img", max_steps=1, lr_sched="cosine_warmup")
    bad = {"optimizer": ("sgd", "run.optimizer='sgd' is not one of adamw"),
           "distributed": ("deepspeed", "run.distributed='deepspeed' is not one of ddp, fsdp"),
           "param_dtype": ("fp8", "run.param_dtype='fp8' is not one of null, float32, bfloat16, float16"),
           "compile_mode": ("fast", "run.compile_mode='fast' is not one of default"),
           "log_every": (0, "run.log_every=0 must be >= 1")}
    for key, (value, message) in bad.items():
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            train(model_cfg, tmp_path / "run", tmp_path / "img", max_steps=1, **{key: value})
    with pytest.raises(ConfigError, match="set run.trainable_dtype=float32"):
        train(model_cfg, tmp_path / "run", tmp_path / "img", max_steps=1, amp="fp16", param_dtype="float16")
    assert not (tmp_path / "run").exists()  # refused before anything was built or written


def test_fsdp_frozen_choice_is_validated_before_building():
    from omegaconf import OmegaConf

    from mmrag.common.config import ConfigError
    from mmrag.runners.runner import Runner

    assert Runner.default_config()["fsdp_frozen"] == "replicate"
    with pytest.raises(ConfigError, match="run.fsdp_frozen='half' is not one of replicate, shard"):
        Runner.validate(OmegaConf.create({**Runner.default_config(), "fsdp_frozen": "half"}))
