"""Every benchmark script under bench/ runs at toy shape on the CPU and ends with its JSON line of figures;
the training benchmark's FLOP formulas agree with what torch's FlopCounterMode sees autograd execute."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH = REPO_ROOT / "bench"
# the script's small-shape flags (bench_corpus_index.py predates --toy) and keys its JSON line must hold
TOY_RUNS = {
    "bench_train_step.py": (["--toy"], ["recipes", "flops_per_step", "speedup_ours_vs_reference", "device"]),
    "bench_profile_train_step.py": (["--toy"], ["total_ms_per_step", "share", "top_ops"]),
    "bench_generative_retrieval.py": (["--toy"], ["modes", "constraint_share_ours", "constraint_share_hf_prefix_fn",
                                                  "constraint_share_ours_device", "device_clues_equal_host",
                                                  "group_beam_search_one_prompt_at_a_time", "hf_search"]),
    "bench_embedding.py": (["--toy", "--workers", "1"], ["images_per_s", "search_qps", "model_only_images_per_s",
                                                        "first_batch_s", "steady_images_per_s", "decode_only_images_per_s_cpu"]),
    "bench_corpus_index.py": (["--tokens", "50000", "--queries", "50", "--searches", "5"],
                              ["build_m_tokens_per_s", "step_cpu_ms", "continuations_p99_ms_max"]),
    "bench_camml.py": (["--toy"], ["no_context", "camml", "step_ratio_camml_vs_no_context", "context_share", "retrieval"]),
    "bench_data_engine.py": (["--toy"], ["oracle_items_per_s", "oracle_checked_items_per_s", "parser_replies_per_s"]),
    "bench_search.py": (["--toy"], ["queries_per_s", "recall_vs_faiss_flat", "recall_vs_exact_fp32", "devices", "place_seconds"]),
    "bench_create_index.py": (["--toy"], ["runs", "images", "decode"]),
    "bench_generation.py": (["--toy"], ["systems", "model", "batch_size"]),
    # launched by torchrun with 2 processes (test_multi_gpu_bench_toy_two_processes)
    "bench_multi_gpu.py": (["--toy"], ["strategies", "baseline_1gpu", "world_size", "global_batch"]),
    "bench_seeing_step.py": (["--toy", "--configs", "lora:targets:none:2"], ["tokens_per_s", "mfu_6nd", "params"]),
    "bench_eval_generative.py": (["--toy", "--queries", "4", "--batch-size", "4", "--backends", "device"], ["runs", "queries", "prepare_s"]),
}


def _module(script: str) -> str:
    """The module name a bench script runs as (`python -m bench.X` from the repository root)."""
    return f"bench.{Path(script).stem}"


def _scripts():
    return sorted(p.name for p in BENCH.glob("bench_*.py"))


def test_every_bench_script_has_a_toy_run():
    assert set(_scripts()) == set(TOY_RUNS), "add the new bench script's toy flags and JSON keys to TOY_RUNS"


def _run(script: str) -> dict:
    flags, keys = TOY_RUNS[script]
    proc = subprocess.run([sys.executable, "-m", _module(script), *flags], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    missing = [k for k in keys if k not in result]
    assert not missing, f"{script}: JSON line lacks {missing}"
    return result


@pytest.mark.parametrize("script", ["bench_embedding.py", "bench_corpus_index.py"])
def test_existing_bench_scripts_print_json(script):
    result = _run(script)
    for key in TOY_RUNS[script][1]:
        assert result[key] > 0


def test_train_step_bench_toy():
    result = _run("bench_train_step.py")
    flops = result["flops_per_step"]
    for name in ("reference", "ours"):
        fig = result["recipes"][name]
        assert fig["samples_per_s"] > 0 and math.isfinite(fig["final_loss"])
        # MFU is the documented ratio of the printed figures
        expected = flops["needed"] / (fig["step_ms_mean"] / 1e3 * result["peak_tflops"] * 1e12)
        assert fig["mfu"] == pytest.approx(expected, rel=1e-3)
        assert fig["tokens_per_s"] == pytest.approx(fig["samples_per_s"] * result["shape"]["seq_len"], rel=1e-3)
    assert result["recipes"]["reference"]["settings"]["attn"] == "eager"
    assert result["recipes"]["ours"]["settings"]["fused_adamw"] is True
    # the speedup from the step times (samples/s is batch / step time, the same batch for both)
    ratio = result["recipes"]["reference"]["step_ms_mean"] / result["recipes"]["ours"]["step_ms_mean"]
    assert result["speedup_ours_vs_reference"] == pytest.approx(ratio, rel=1e-2)


def test_generative_retrieval_bench_toy():
    result = _run("bench_generative_retrieval.py")
    modes = result["modes"]
    assert set(modes) == {"ours", "ours_device", "ours_device_fused", "ours_noop", "ours_eager", "ours_hf_cache",
                          "hf_prefix_fn", "hf_plain"}
    # the device-table constraint decodes exactly the host path's clues, with one start + 10 advances a batch
    assert result["device_clues_equal_host"] is True and modes["ours_device"]["processor_calls"] == 11
    for fig in modes.values():
        assert fig["queries_per_s"] > 0
        assert fig["projected_okvqa_gs112k_test_s"] == pytest.approx(5046 / fig["queries_per_s"], rel=1e-2)
    # the constrained modes charged host time to their processor's mask preparation, once per step
    assert modes["ours"]["processor_s"] > 0 and modes["ours"]["processor_calls"] == 11
    assert "processor_s" not in modes["ours_noop"]
    assert modes["hf_prefix_fn"]["processor_calls"] > 0
    # all prompts of a batch decode together: one prefill, one forward per step, no extra last forward
    for name in ("ours", "ours_eager", "ours_hf_cache"):
        assert modes[name]["prefill_batch_max"] == 2 and modes[name]["prefill_calls_per_batch"] == 1
        assert modes[name]["decode_forwards_per_batch"] == 10  # CPU: no CUDA graphs, every step is seen
    assert result["group_beam_search_one_prompt_at_a_time"] is False


@pytest.fixture(scope="module")
def train_bench():
    from bench import bench_train_step

    return bench_train_step


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_train_step_flops_match_flop_counter(train_bench, attn):
    """Matmul FLOPs of one fwd+bwd = the formula's linear parts + the wasted prefix path, exactly;
    with eager attention the LLM's full-square bmm FLOPs are twice the causal count we call needed."""
    from torch.utils.flop_counter import FlopCounterMode

    b = train_bench
    shape = b.shape_from_args(b.parse_args(["--toy"]))
    recipe = b.Recipe("probe", "float32", "float32", None, False, attn, False, False)
    torch.manual_seed(0)
    model = b.build_model(shape, recipe, torch.device("cpu"))
    batch = b.random_batch(shape, model, torch.device("cpu"), torch.float32)
    flops = b.step_flops(model, shape)
    with FlopCounterMode(display=False) as counter:
        out = model(batch)
        (out["loss_sum"] / out["n_tokens"]).backward()
    counted = {str(op).split(".")[-1]: n for op, n in counter.get_flop_counts()["Global"].items()}
    matmul = counted.get("mm", 0) + counted.get("addmm", 0) + counted.get("convolution", 0)
    assert matmul == sum(flops["linear"].values()) + flops["vision_wasted_prefix_path"]["linear"]
    if attn == "eager":  # HF CLIP's eager blocks (the frozen ones) also use bmm: forward 4*d*n^2 per image
        vision = shape["vision"]
        n = (vision["image_size"] // vision["patch_size"]) ** 2 + 1
        frozen = vision["num_hidden_layers"] - shape["prefix"]["layers"]
        clip_bmm = 4 * vision["hidden_size"] * n * n * frozen * shape["batch"]
        expected = 2 * flops["attention"]["llm_causal"] + clip_bmm
        # some transformers versions (5.17) compute the rotary angles as a bmm too: inv_freq (head_dim / 2)
        # x the positions of one row (the forward passes no position ids; they broadcast over the batch)
        llm = shape["llm"]
        rotary = 2 * (llm["hidden_size"] // llm["num_attention_heads"] // 2) * shape["seq_len"]
        assert counted["bmm"] in (expected, expected + rotary)


def test_multi_gpu_bench_toy_two_processes():
    """DDP and FSDP over 2 gloo processes on the CPU: figures for both, against a 1-process baseline
    measured in the same launch; DDP keeps the replicas equal, FSDP holds about half the weights a rank."""
    flags, keys = TOY_RUNS["bench_multi_gpu.py"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", _module("bench_multi_gpu.py"), *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO_ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not [k for k in keys if k not in result]
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    assert result["global_batch"] == 2 * result["per_gpu_batch"]
    baseline = result["baseline_1gpu"]["samples_per_s"]
    for name in ("ddp", "fsdp"):
        fig = result["strategies"][name]
        assert fig["gpus"] == 2 and math.isfinite(fig["final_loss"])
        assert fig["samples_per_s"] == pytest.approx(2 * result["per_gpu_batch"] / (fig["step_ms_mean"] / 1e3), rel=1e-2)
        assert fig["scaling_efficiency"] == pytest.approx(fig["samples_per_s"] / (2 * baseline), rel=1e-2)
    assert result["strategies"]["ddp"]["trainable_replicas_equal"] is True
    assert result["strategies"]["ddp"]["local_param_share"] == 1.0
    assert 0.4 < result["strategies"]["fsdp"]["local_param_share"] < 0.6


def _run_train_script(script: str, *extra: str) -> dict:
    """A training-step bench script at toy shape with extra flags; its JSON line."""
    proc = subprocess.run([sys.executable, "-m", _module(script), *TOY_RUNS[script][0], *extra], capture_output=True,
                          text=True, timeout=180, cwd=REPO_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_profile_bench_toy():
    """The profile of a compiled step (decoder layers compiled): the compiled graphs are their own kind."""
    result = _run_train_script("bench_profile_train_step.py", "--recipe", "ours@layers")
    assert result["total_ms_per_step"] > 0 and result["top_ops"]
    assert sum(result["share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert set(result["share"]) <= {"matmul", "attention", "compiled", "other"} and result["share"]["compiled"] > 0
    assert result["settings"]["compile_scope"] == "layers" and len(result["settings"]["compiled_modules"]) == 2


def test_train_step_bench_toy_compiled_variant():
    """An eager and a compiled variant in one run: same weights, so the same loss; all decoder layers
    share one compiled graph (no recompiles, no graph breaks); the settings say what ran."""
    variant = "ours@layers:reduce-overhead+coordinate_descent_tuning"  # CPU: CUDA graphs are skipped
    result = _run_train_script("bench_train_step.py", "--recipes", f"ours,{variant}", "--steps", "2")
    eager, compiled = result["recipes"]["ours"], result["recipes"][variant]
    assert eager["settings"]["compile_scope"] == "none"
    settings = compiled["settings"]
    assert (settings["compile_scope"], settings["compile_mode"]) == ("layers", "reduce-overhead")
    assert settings["inductor_flags"] == ["coordinate_descent_tuning"]
    assert compiled["compile_stats"]["unique_graphs"] == 1 and compiled["compile_stats"]["graph_breaks"] == 0
    assert compiled["samples_per_s"] > 0 and compiled["first_step_s"] > 0
    # bf16 on both sides; inductor rounds its fused intermediates differently and draws its own dropout
    assert compiled["final_loss"] == pytest.approx(eager["final_loss"], rel=1e-2)
    assert result["shape"]["warmup"] == 3  # the compiled variant raised the toy warm-up (1) to 3


def test_train_step_recipe_variants_parse(train_bench):
    b = train_bench
    variant = "ours@llm:max-autotune-no-cudagraphs+coordinate_descent_tuning"
    args = b.parse_args(["--toy", "--compile", "--recipes", f"reference,ours,{variant},ours_fp32_master"])
    ref, ours, llm, fp32 = b.recipes_from_args(args)
    assert (ref.compile_scope, ours.compile_scope, fp32.compile_scope) == ("none", "layers", "layers")
    assert (llm.name, llm.compile_scope, llm.compile_mode) == (variant, "llm", "max-autotune-no-cudagraphs")
    assert llm.inductor_flags == ("coordinate_descent_tuning",)
    plain = b.recipes_from_args(b.parse_args(["--recipes", "ours,ours@model", "--compile-mode", "reduce-overhead"]))
    assert [(r.compile_scope, r.compile_mode) for r in plain] == [("none", "default"), ("model", "reduce-overhead")]
    for bad in ("ours@everything", "ours@none:reduce-overhead", "ours@llm+no_such_flag", "ours,ours", "theirs"):
        with pytest.raises(b.BenchError):
            b.recipes_from_args(b.parse_args(["--recipes", bad]))
    with pytest.raises(b.BenchError, match="contradicts"):
        b.recipes_from_args(b.parse_args(["--compile", "--compile-scope", "llm"]))


def test_failed_compiled_recipe_is_reported_not_raised(train_bench, monkeypatch):
    """A compiled recipe that fails becomes the recipe's `error`; an eager recipe's failure still ends the run."""
    b = train_bench

    def fail(recipe, *args):
        raise RuntimeError("CUDA graphs: accessing an overwritten output\nsecond line")

    monkeypatch.setattr(b, "measure_recipe", fail)
    shape, device = b.shape_from_args(b.parse_args(["--toy"])), torch.device("cpu")
    compiled, eager = b.recipes_from_args(b.parse_args(["--recipes", "ours@llm:reduce-overhead,ours"]))
    out = b.run_recipe(compiled, shape, device, 1e12)
    assert out["result"]["error"] == "RuntimeError: CUDA graphs: accessing an overwritten output"
    assert out["result"]["settings"]["compile_mode"] == "reduce-overhead" and out["flops"] is None
    with pytest.raises(RuntimeError, match="overwritten"):
        b.run_recipe(eager, shape, device, 1e12)


def test_eval_generative_bench_toy():
    from bench.bench_eval_generative import INPUTS

    if not all((REPO_ROOT / p).exists() for p in INPUTS):
        pytest.skip("the small world's indexes are not prepared (python train.py prepares them)")
    result = _run("bench_eval_generative.py")
    run = result["runs"][0]
    assert "error" not in run, run
    # eval.py answered every cycled question, and the device-table constraint kept every clue in the corpus
    assert run["backend"] == "device" and run["queries"] == 4 and run["clues_in_corpus"] == 1.0
    assert run["wall_s"] >= run["retrieval_s"] > 0
    # eval.py's phases: the task's retrieval timer runs inside its evaluate phase, and the phases fit the wall
    phases = run["phases"]
    assert phases["evaluate_s"] >= run["retrieval_s"] and phases["build_model_s"] > 0
    assert phases["outside_s"] >= 0
