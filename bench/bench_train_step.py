"""Benchmark the GeMKR training step at real shapes: the reference recipe and ours, side by side in one run.

    python -m bench.bench_train_step --toy                                  # CPU, tiny shapes, seconds
    python -m bench.bench_train_step                                        # GPU: CLIP ViT-L/14 @224 + LLaMA-7B
    python -m bench.bench_train_step --image-size 336 --compile --recipes reference,ours,ours_fp32_master
    python -m bench.bench_train_step --recipes reference,ours,ours@layers,ours@llm,ours@model:reduce-overhead

The model is the project's GeMKR class built from a config dict (random weights, created directly on
the device in the recipe's dtype): frozen CLIP ViT-L/14 with the object-aware region prefix in its
last 20 blocks (prefix 10, 10 region features), LayerNorm+Linear projector, LLaMA-7B shape with LoRA
r=8/alpha 16 on q_proj/v_proj. Batch 12 x 360 tokens, the last `--target-tokens` (the clue + EOS)
are the loss targets. Inputs are random tensors already on the device (data loading is not timed).
Every recipe builds its model from the same seed (same weights), runs, and frees it (compiled
graphs and CUDA-graph pools too) before the next one.

Recipes (`--recipes`):
  reference         fp16 frozen weights, fp32 trainable weights, autocast(fp16) + GradScaler, eager
                    attention, AdamW (foreach), loss.item() every step (what a per-step logger does).
  ours              bf16 everywhere (trainable weights too), SDPA (or --ours-attn flash_attention_2),
                    fused AdamW, no .item() per step, optional compilation / --checkpointing.
  ours_fp32_master  as `ours`, but trainable weights in fp32 under autocast(bf16): LoRA updates of
                    lr ~1e-4 relative size are below bf16's resolution (2^-8), so pure-bf16 can lose them.

Compilation (mmrag/runners/compilation.py, the runner's `run.compile` uses the same function): a
recipe name may carry its own, `RECIPE[@SCOPE[:MODE]][+INDUCTOR_FLAG...]`, e.g. `ours@llm`,
`ours@llm:max-autotune-no-cudagraphs`, `ours@llm+coordinate_descent_tuning`; the name, as written,
is the recipe's key in the JSON line. Parts a name leaves out come from --compile-scope /
--compile-mode / --inductor-flags (`--compile` = `--compile-scope layers`), except that `reference`
without `@` stays eager.
  scope  none | layers (every decoder layer) | llm (the decoder stack: one graph with rotary, norms,
         LoRA) | model (llm + the region-prefix vision encoder + the projector, three graphs; the
         forward's own host-side index work and the loss stay eager).
  mode   default | max-autotune-no-cudagraphs | reduce-overhead (CUDA graphs; the step marks
         `cudagraph_mark_step_begin`) | max-autotune.
  flags  boolean torch._inductor.config options set to True (coordinate_descent_tuning: autotunes
         the generated elementwise/reduction kernels without max-autotune's GEMM search).
A compiled recipe that fails (compiler error, CUDA-graph error, non-finite loss) reports `error`, as
an out-of-memory does, and the run goes on; results carry `compile_stats` (graphs, graph breaks,
CUDA-graph skips) and `first_step_s` (the first step's wall time: compilation happens there).

FLOPs per step ("needed": what the step must compute; `step_flops` below):
  LLM, frozen base + LoRA. A frozen matmul weight (d_in x d_out) costs 2*d_in*d_out FLOPs per token
    forward and the same backward for the gradient w.r.t. its input; no weight gradient is needed:
    4 * N_dec * T (N_dec = decoder matmul weights, T = batch * seq). Causal attention: the lower
    triangle of QK^T and PV, 2 * s^2 * h FLOPs per layer and sample forward, 2x that backward.
    LoRA adapters are trained: 6 * N_lora * T. The LM head runs at target positions only and needs
    the gradient w.r.t. its input only: 4 * vocab * h * T_target.
  Vision tower, frozen. The patch embedding and the first (layers - 20) blocks run forward only:
    2 * N_block * n_img per image (n_img = patches + CLS) plus 4*d*n_img^2 attention. The 20 prefix-
    tuned blocks need forward + backward w.r.t. activations (the gradient reaches the prefixes) for the
    image tokens (2 + 2) * N_block * n_img, except that the first of them needs no backward for the
    image tokens' q/k/v nor image->image attention; the prefix tokens need only their k/v projections,
    except in the last block whose prefix outputs are the visual tokens (see `_adapted_block_flops`).
    The prefix-query path the model also runs in the other 19 blocks is reported as
    `vision_wasted_prefix_path`, not counted as needed. Attention: 4*d FLOPs per query-key pair
    forward, 2x that backward. tests/bench checks the matmul part against torch's FlopCounterMode.
  Projector (trained): 6 * N_proj * visual tokens.
  Also printed: the usual "6 x params x tokens" convention, 6 * (N_dec * T + N_vit * n_img * batch)
  (`mfu_6nd`), and 4 * N_dec * T alone (`mfu_4nd_llm`, the convention of issue 7's quick measurement).
MFU = FLOPs per step / (mean step seconds * --peak-tflops), 989 TFLOP/s = H100/H200 dense bf16.
"""
from __future__ import annotations

import argparse
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, List, Optional, Tuple

import torch
from omegaconf import OmegaConf
from torch import nn

from bench.common import (DTYPES, BenchError, StepTimer, emit, free_memory,
                          machine_info, peak_memory_gib, percentile_ms, pick_device, reset_peak_memory, sync)
from mmrag.models.gemkr import GeMKR
from mmrag.processors.tokenization import IGNORE_INDEX, IMAGE_PLACEHOLDER_ID
from mmrag.runners import compilation, distributed, train_step

REAL_SHAPE: Dict[str, Any] = {
    "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
               "patch_size": 14, "image_size": 224, "hidden_act": "quick_gelu"},
    "prefix": {"layers": 20, "prefix_len": 10, "num_output_tokens": 2, "regions": 10},
    "llm": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6},
    "batch": 12, "seq_len": 360, "target_tokens": 20, "warmup": 3, "steps": 10,
}
TOY_SHAPE: Dict[str, Any] = {
    "vision": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
               "patch_size": 8, "image_size": 32, "hidden_act": "quick_gelu"},
    "prefix": {"layers": 2, "prefix_len": 10, "num_output_tokens": 2, "regions": 10},
    "llm": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 4, "max_position_embeddings": 256},
    "batch": 2, "seq_len": 48, "target_tokens": 8, "warmup": 1, "steps": 3,
}
IMAGE_AT = 32  # position of the first visual token: after the system prompt, as in the template
LR = 6e-5      # GeMKR's peak learning rate (speed does not depend on it)


@dataclass(frozen=True)
class Recipe:
    name: str
    frozen_dtype: str          # weights that are not trained (vision tower, LLM base)
    master_dtype: str          # trained weights (LoRA, projector, region prefix) and their optimizer state
    autocast_dtype: Optional[str]
    grad_scaler: bool
    attn: str                  # attn_implementation for the LLM and the CLIP blocks HF runs
    fused_adamw: bool
    item_every_step: bool      # a host sync per step, as a per-step loss logger does
    checkpointing: bool = False
    compile_scope: str = "none"               # see mmrag/runners/compilation.py
    compile_mode: str = "default"
    inductor_flags: Tuple[str, ...] = ()      # boolean torch._inductor.config options set to True

    @property
    def compiled(self) -> bool:
        return self.compile_scope != "none"


def base_recipes(args) -> Dict[str, Recipe]:
    """The recipes by name, eager (compilation is added per variant)."""
    return {
        "reference": Recipe("reference", "float16", "float32", "float16", True, "eager", False, True),
        "ours": Recipe("ours", "bfloat16", "bfloat16", None, False, args.ours_attn, True, False, args.checkpointing),
        "ours_fp32_master": Recipe("ours_fp32_master", "bfloat16", "float32", "bfloat16", False, args.ours_attn,
                                   True, False, args.checkpointing),
        # `ours` through `python train.py`'s code path: config system, task, Runner loop (train_py_recipe.py)
        "runner": Recipe("runner", "bfloat16", "bfloat16", None, False, args.ours_attn, True, False, args.checkpointing),
    }


def default_compile_scope(args) -> str:
    """--compile-scope, with the older --compile meaning `layers`."""
    scope = getattr(args, "compile_scope", None)
    if getattr(args, "compile", False):
        if scope not in (None, "layers"):
            raise BenchError(f"--compile means --compile-scope layers; it contradicts --compile-scope {scope}")
        return "layers"
    return scope or "none"


def parse_variant(text: str, known: Dict[str, Recipe], args) -> Recipe:
    """`RECIPE[@SCOPE[:MODE]][+FLAG...]` -> the recipe with that compilation (module docstring)."""
    head, *flags = text.split("+")
    name, at, compile_part = head.partition("@")
    if name not in known:
        raise BenchError(f"--recipes: unknown recipe {name!r} in {text!r}; expected one of {sorted(known)}")
    scope, colon, mode = compile_part.partition(":")
    if not at:  # the command-line defaults: ours-family recipes only, as --compile always did
        scope = default_compile_scope(args) if name != "reference" else "none"
    if not colon:
        mode = getattr(args, "compile_mode", "default") if scope != "none" else "default"
    if not flags and scope != "none":
        flags = [f for f in (getattr(args, "inductor_flags", "") or "").split(",") if f]
    if scope == "none" and (mode != "default" or flags):
        raise BenchError(f"--recipes: {text!r} sets a compile mode or inductor flag but compiles nothing")
    try:
        compilation.check_choice("compile scope", scope, compilation.COMPILE_SCOPES)
        compilation.inductor_options(mode, flags)
    except compilation.CompileOptionError as err:
        raise BenchError(f"--recipes: {text!r}: {err}") from err
    compiled = {"compile_scope": scope, "compile_mode": mode, "inductor_flags": tuple(flags)}
    return replace(known[name], name=text, **compiled)


def recipes_from_args(args) -> List[Recipe]:
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise BenchError(f"--recipes {args.recipes!r}: expected a comma list of distinct recipe names")
    known = base_recipes(args)
    return [parse_variant(n, known, args) for n in names]


# ---------------------------------------------------------------------------------------------- model

def gemkr_config(shape: Dict[str, Any], recipe: Recipe) -> Dict[str, Any]:
    """The model: section of a GeMKR run at `shape`, random weights, for `recipe`."""
    prefix = shape["prefix"]
    return {
        "arch": "gemkr",
        "vision_tower": {"type": "hf_clip", "config": {**shape["vision"], "attn_implementation": recipe.attn}},
        "region_prefix": {"enabled": True, "layers": prefix["layers"], "prefix_len": prefix["prefix_len"],
                          "num_output_tokens": prefix["num_output_tokens"]},
        "llm": {"config": dict(shape["llm"]), "dtype": recipe.frozen_dtype, "attn_implementation": recipe.attn,
                "gradient_checkpointing": recipe.checkpointing},
        "lora": {"enabled": True, "r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
        "max_txt_len": shape["seq_len"],
    }


def frozen_dtype(recipe: Recipe, device: torch.device) -> str:
    """The recipe's frozen dtype; fp32 for autocast recipes on the CPU, whose autocast (unlike CUDA's) does
    not run layer_norm in fp32 and so fails on the fp32 region prefix against a half-precision LayerNorm."""
    return recipe.frozen_dtype if device.type == "cuda" or recipe.autocast_dtype is None else "float32"


def build_model(shape: Dict[str, Any], recipe: Recipe, device: torch.device) -> GeMKR:
    """GeMKR built on `device` in the frozen dtype; trained weights then cast to the master dtype."""
    cfg = gemkr_config(shape, recipe)
    with train_step.build_on(device, DTYPES[frozen_dtype(recipe, device)]):
        model = GeMKR(OmegaConf.merge(GeMKR.default_config(cfg), cfg))
    for p in model.parameters():
        if p.requires_grad:  # peft keeps adapters in fp32 by default; the recipe decides
            p.data = p.data.to(DTYPES[recipe.master_dtype])
    model.compiled_modules = compilation.compile_model(model, recipe.compile_scope, recipe.compile_mode,
                                                       recipe.inductor_flags)
    return model.train()


def causal_lm(model: GeMKR) -> nn.Module:
    return compilation.causal_lm(model)


def decoder_layers(model: GeMKR) -> nn.ModuleList:
    return compilation.decoder_stack(model).layers


def random_batch(shape: Dict[str, Any], model: GeMKR, device: torch.device, dtype: torch.dtype,
                 seed: int = 0) -> Dict[str, torch.Tensor]:
    """Full-length rows: BOS, prompt tokens with the visual placeholders at IMAGE_AT, the clue + EOS as targets."""
    gen = torch.Generator().manual_seed(seed)
    batch, seq, n_target = shape["batch"], shape["seq_len"], shape["target_tokens"]
    n_visual, vocab = model.num_visual_tokens, causal_lm(model).config.vocab_size
    if IMAGE_AT + n_visual + n_target >= seq:
        raise BenchError(f"--seq-len {seq} too short for {n_visual} visual tokens at {IMAGE_AT} + {n_target} targets")
    ids = torch.randint(3, vocab, (batch, seq), generator=gen)
    ids[:, 0], ids[:, -1] = 1, 2  # <s> ... </s>
    ids[:, IMAGE_AT:IMAGE_AT + n_visual] = IMAGE_PLACEHOLDER_ID
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, -n_target:] = ids[:, -n_target:]
    size, width = shape["vision"]["image_size"], shape["vision"]["hidden_size"]
    pixels = torch.randn(batch, 3, size, size, generator=gen)
    regions = torch.randn(batch, shape["prefix"]["regions"], width, generator=gen)
    # token ids, labels and mask stay on the CPU, as the runner's collated batches do: the model finds
    # image and target positions there without a device sync, and moves what the GPU needs itself
    return {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids),
            "pixel_values": pixels.to(device, dtype), "regions": regions.to(device, dtype)}


# ---------------------------------------------------------------------------------------------- FLOPs

def _matmul_params(module: nn.Module, lora: bool) -> int:
    """Weights of the nn.Linear layers under `module`: frozen base layers, or (lora=True) the adapters."""
    return sum(m.weight.numel() for name, m in module.named_modules()
               if isinstance(m, nn.Linear) and (("lora_" in name) == lora))


def _block_params(block: nn.Module) -> Dict[str, int]:
    attn = block.self_attn
    qkv = sum(getattr(attn, n).weight.numel() for n in ("q_proj", "k_proj", "v_proj"))
    kv = attn.k_proj.weight.numel() + attn.v_proj.weight.numel()
    return {"all": _matmul_params(block, lora=False), "qkv": qkv, "kv": kv}


def _adapted_block_flops(w: Dict[str, int], n: int, p: int, d: int, first: bool, last: bool) -> Dict[str, float]:
    """One prefix-tuned block, per image: forward + backward w.r.t. activations of what its outputs need.

    n image tokens, p prefix tokens, width d. Only the last block's prefix outputs are used, so in the
    others the prefix tokens need only their key/value projections, which is all the model computes
    there (`wasted_*` stays 0; it counted that path while the model ran it). In the first adapted
    block the image tokens' q/k/v need no backward (their input comes from frozen blocks) and neither
    does the image->image attention.
    """
    image_att, prefix_att, query_att = 4.0 * d * n * n, 4.0 * d * n * p, 4.0 * d * p * (n + p)
    fwd = 2.0 * w["all"] * n + 2.0 * w["kv"] * p
    bwd = 2.0 * (w["all"] - (w["qkv"] if first else 0)) * n + 2.0 * w["kv"] * p
    attention = image_att * (1 if first else 3) + prefix_att * 3
    prefix_query_linear = 2.0 * (w["all"] - w["kv"]) * p  # q, out_proj and MLP of the prefix tokens
    if last:  # its prefix outputs are the visual tokens: the full prefix path, forward and backward
        return {"linear": fwd + bwd + 2 * prefix_query_linear, "attention": attention + 3 * query_att,
                "wasted_linear": 0.0, "wasted_attention": 0.0}
    # the model computes the prefix-query path in the last adapted block only, so nothing is wasted
    # (the H200 runs of 2026-11-22 predate that: their JSON reports what they computed needlessly)
    return {"linear": fwd + bwd, "attention": attention, "wasted_linear": 0.0, "wasted_attention": 0.0}


def vision_flops(model: GeMKR) -> Dict[str, float]:
    """Per image: frozen blocks forward only, prefix-tuned blocks as in `_adapted_block_flops`."""
    tower, prefix = model.vision_tower, model.region_prefix
    patches = (tower.image_size // tower.patch_size) ** 2
    n, p, d = patches + 1, prefix.prefix.shape[1], tower.hidden_size
    conv = 2.0 * 3 * tower.patch_size ** 2 * d * patches  # the patch embedding, forward only
    out = {"linear": conv, "attention": 0.0, "wasted_linear": 0.0, "wasted_attention": 0.0, "params": 0}
    first, last = prefix.first_adapted, len(tower.blocks) - 1
    for i, block in enumerate(tower.blocks):
        w = _block_params(block)
        out["params"] += w["all"]
        if i < first:
            part = {"linear": 2.0 * w["all"] * n, "attention": 4.0 * d * n * n}
        else:
            part = _adapted_block_flops(w, n, p, d, i == first, i == last)
        for key, value in part.items():
            out[key] += value
    out["tokens"] = n
    return out


def step_flops(model: GeMKR, shape: Dict[str, Any]) -> Dict[str, Any]:
    """FLOPs one training step needs, by part (see the module docstring for the formulas)."""
    lm, batch, seq = causal_lm(model), shape["batch"], shape["seq_len"]
    tokens, cfg = batch * seq, lm.config
    layers = decoder_layers(model)
    n_dec, n_lora = _matmul_params(layers, lora=False), _matmul_params(layers, lora=True)
    causal_attn_fwd = 2.0 * seq * seq * cfg.hidden_size * cfg.num_hidden_layers * batch  # half of 4*s^2*h
    head = lm.get_output_embeddings().weight.numel()
    vision = vision_flops(model)
    n_proj = _matmul_params(model.projector, lora=False)
    linear = {"llm_decoder": 4.0 * n_dec * tokens, "lora": 6.0 * n_lora * tokens,
              "lm_head_at_targets": 4.0 * head * batch * shape["target_tokens"],
              "vision": batch * vision["linear"], "projector": 6.0 * n_proj * batch * model.num_visual_tokens}
    attention = {"llm_causal": 3 * causal_attn_fwd, "vision": batch * vision["attention"]}
    needed = sum(linear.values()) + sum(attention.values())
    six_nd = 6.0 * (n_dec * tokens + vision["params"] * vision["tokens"] * batch)
    return {"needed": needed, "six_nd": six_nd, "four_nd_llm": 4.0 * n_dec * tokens,
            "linear": linear, "attention": attention,
            "vision_wasted_prefix_path": {"linear": batch * vision["wasted_linear"],
                                          "attention": batch * vision["wasted_attention"]},
            "params": {"llm_decoder_matmul": n_dec, "lora": n_lora, "lm_head": head, "vision_blocks": vision["params"],
                       "projector_matmul": n_proj, "trainable": model.num_trainable()}}


# ---------------------------------------------------------------------------------------------- step

class TrainStep:
    """One optimiser step of `recipe` on a fixed batch, built from the runner's own parts
    (mmrag/runners/train_step.py: `build_optimizer`, `TrainStep`); returns the loss as a device tensor."""

    AMP = {None: "no", "bfloat16": "bf16", "float16": "fp16"}

    def __init__(self, model: nn.Module, recipe: Recipe, device: torch.device, world: int = 1) -> None:
        self.model, self.recipe, self.world = model, recipe, world
        self.optimizer = train_step.build_optimizer(model, "adamw", LR, 0.05, fused=recipe.fused_adamw)
        cudagraphs = recipe.compiled and compilation.uses_cudagraphs(recipe.compile_mode, recipe.inductor_flags)
        # reference: autocast fp16 + GradScaler; ours_fp32_master: autocast bf16; ours: bf16 weights, no autocast
        self.step = train_step.TrainStep(model, self.optimizer, amp=self.AMP[recipe.autocast_dtype],
                                         world=world, cudagraphs=cudagraphs)
        self.logged: List[float] = []

    def __call__(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        # every rank's rows hold the same number of targets: the global count needs no collective
        units = float(distributed.unwrap(self.model).loss_units(batch) * self.world)
        loss = self.step([batch], units) / (units / self.world)
        if self.recipe.item_every_step:
            self.logged.append(loss.item())
        return loss


def count_host_syncs(step: TrainStep, batch: Dict[str, torch.Tensor], device: torch.device) -> Optional[int]:
    """Host syncs in one step, counted by CUDA's sync debug mode (None on the CPU)."""
    if device.type != "cuda":
        return None
    sync(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step(batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def timed_steps(step: TrainStep, batch: Dict[str, torch.Tensor], shape: Dict[str, Any],
                device: torch.device) -> Dict[str, Any]:
    """Warm-up steps (the first one timed alone: compilation happens there), the host-sync count, then
    `steps` timed steps: their seconds, their wall time and the last loss (the one host read)."""
    first: Optional[float] = None
    for i in range(shape["warmup"]):
        sync(device)
        start = time.perf_counter()
        step(batch)
        if i == 0:
            sync(device)
            first = time.perf_counter() - start
    syncs = count_host_syncs(step, batch, device)
    timer, losses = StepTimer(device), []
    sync(device)
    wall = time.perf_counter()
    timer.mark()
    for _ in range(shape["steps"]):
        losses.append(step(batch))
        timer.mark()
    seconds = timer.step_seconds()
    return {"seconds": seconds, "wall": time.perf_counter() - wall, "first_step_s": first,
            "syncs": syncs, "final_loss": float(torch.stack(losses)[-1])}


def measure_recipe(recipe: Recipe, shape: Dict[str, Any], device: torch.device, peak_flops: float) -> Dict[str, Any]:
    start = time.perf_counter()
    torch.manual_seed(0)  # every recipe starts from the same weights and batch: final losses compare
    model = build_model(shape, recipe, device)
    batch = random_batch(shape, model, device, DTYPES[frozen_dtype(recipe, device)])
    flops = step_flops(model, shape)
    build_s = time.perf_counter() - start
    step = TrainStep(model, recipe, device)
    reset_peak_memory(device)
    torch._dynamo.utils.counters.clear()
    timed = timed_steps(step, batch, shape, device)
    final_loss, mean = timed["final_loss"], float(timed["seconds"].mean())
    if not torch.isfinite(torch.tensor(final_loss)):
        raise BenchError(f"recipe {recipe.name}: the loss became {final_loss}")
    result = {"samples_per_s": round(shape["batch"] / mean, 3),
              "tokens_per_s": round(shape["batch"] * shape["seq_len"] / mean, 1),
              "step_ms_mean": round(mean * 1e3, 3), "step_ms_p50": percentile_ms(timed["seconds"], 50),
              "wall_s_timed_steps": round(timed["wall"], 3), "peak_memory_gib": peak_memory_gib(device),
              "mfu": float(f"{flops['needed'] / (mean * peak_flops):.4g}"),
              "mfu_6nd": float(f"{flops['six_nd'] / (mean * peak_flops):.4g}"),
              "mfu_4nd_llm": float(f"{flops['four_nd_llm'] / (mean * peak_flops):.4g}"),
              "host_syncs_per_step": timed["syncs"], "final_loss": round(final_loss, 4), "build_s": round(build_s, 2),
              "first_step_s": timed["first_step_s"] and round(timed["first_step_s"], 2),
              "settings": recipe_settings(recipe, device, model)}
    if recipe.compiled:
        result["compile_stats"] = compilation.compile_stats()
    del step, model, batch
    return {"result": result, "flops": flops}


def measure_runner_recipe(recipe: Recipe, shape: Dict[str, Any], device: torch.device,
                          peak_flops: float) -> Dict[str, Any]:
    """The `runner` recipe: `python train.py` on the bench's model and shape (bench/train_py_run.py).
    MFU uses the FLOPs counted on another recipe of the run (same shape), filled in by `main`."""
    from bench.train_py_run import run_train_py

    torch.manual_seed(0)
    reset_peak_memory(device)
    timed = run_train_py(shape, gemkr_config(shape, recipe), recipe, LR, device)
    mean = timed["step_s"]
    result = {"samples_per_s": round(shape["batch"] / mean, 3),
              "tokens_per_s": round(shape["batch"] * shape["seq_len"] / mean, 1),
              "step_ms_mean": round(mean * 1e3, 3), "peak_memory_gib": peak_memory_gib(device),
              "final_loss": round(timed["final_loss"], 4), "first_record_s": timed["first_record_s"],
              "settings": {**recipe_settings(recipe, device), "run": timed["run"]}}
    if not torch.isfinite(torch.tensor(result["final_loss"])):
        raise BenchError(f"recipe {recipe.name}: the loss became {result['final_loss']}")
    return {"result": result, "flops": None}


def recipe_settings(recipe: Recipe, device: torch.device, model: Optional[nn.Module] = None) -> Dict[str, Any]:
    """What ran: the recipe's fields, the frozen dtype used on this device, the modules compiled."""
    settings = {**asdict(recipe), "frozen_dtype": frozen_dtype(recipe, device)}
    if model is not None and recipe.compiled:
        names = getattr(model, "compiled_modules", [])
        settings["compiled_modules"] = names if len(names) <= 4 else [names[0], f"... {len(names)} in all", names[-1]]
    return settings


def release(device: torch.device) -> None:
    """Free the last recipe's memory, its compiled graphs and CUDA-graph pools included."""
    torch._dynamo.reset()
    free_memory(device)


def run_recipe(recipe: Recipe, shape: Dict[str, Any], device: torch.device, peak_flops: float) -> Dict[str, Any]:
    """measure_recipe, with an out-of-memory (or, for a compiled recipe, any failure: compiler, CUDA
    graphs, a non-finite loss) recorded as the recipe's result instead of ending the run."""
    try:
        measure = measure_runner_recipe if recipe.name.split("@")[0] == "runner" else measure_recipe
        out = measure(recipe, shape, device, peak_flops)
        release(device)
        return out
    except torch.OutOfMemoryError as err:
        message = f"out of memory: {str(err).splitlines()[0]}"
    except Exception as err:  # noqa: BLE001 - reported below with its traceback, never swallowed
        if not recipe.compiled:
            raise
        traceback.print_exc()
        first_line = (str(err).strip().splitlines() or [""])[0]
        message = f"{type(err).__name__}: {first_line[:500]}"
    release(device)  # outside the except block: the traceback's frames no longer hold the model
    return {"result": {"error": message, "settings": recipe_settings(recipe, device)}, "flops": None}


# ---------------------------------------------------------------------------------------------- main

def shape_from_args(args) -> Dict[str, Any]:
    shape = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (TOY_SHAPE if args.toy else REAL_SHAPE).items()}
    for key in ("batch", "seq_len", "target_tokens", "warmup", "steps"):
        if getattr(args, key) is not None:
            shape[key] = getattr(args, key)
    if args.image_size is not None:
        shape["vision"]["image_size"] = args.image_size
    if args.llm_layers is not None:  # a quick look at a shallower LLM; MFU stays comparable
        shape["llm"]["num_hidden_layers"] = args.llm_layers
    if args.warmup is None and any(r.compiled for r in recipes_from_args(args)):
        shape["warmup"] = max(shape["warmup"], 3)  # the first compiled steps compile (and record CUDA graphs)
    return shape


def add_step_arguments(ap) -> None:
    """The model-shape and step options, shared with bench_multi_gpu.py."""
    ap.add_argument("--image-size", type=int, default=None, help="224 (default) or 336")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq-len", dest="seq_len", type=int, default=None)
    ap.add_argument("--target-tokens", dest="target_tokens", type=int, default=None,
                    help="loss targets per row: the clue + EOS (default 20)")
    ap.add_argument("--llm-layers", type=int, default=None, help="override the LLM depth (default 32)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per recipe / strategy")
    ap.add_argument("--compile", action="store_true", help="= --compile-scope layers (kept for older commands)")
    ap.add_argument("--compile-scope", default=None, choices=compilation.COMPILE_SCOPES,
                    help="recipes other than reference, unless their name says: what torch.compile compiles "
                    "(default none; see the docstring)")
    ap.add_argument("--compile-mode", default="default", choices=compilation.COMPILE_MODES,
                    help="torch.compile mode of the compiled recipes")
    ap.add_argument("--inductor-flags", default="",
                    help="comma list of boolean torch._inductor.config options set to True for compiled recipes")
    ap.add_argument("--checkpointing", action="store_true", help="ours: activation checkpointing in the LLM")
    ap.add_argument("--ours-attn", default="sdpa", choices=["sdpa", "flash_attention_2", "eager"])
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="peak dense bf16 TFLOP/s of the device")
    ap.add_argument("--device", default=None, help="cuda (default when present) or cpu")


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="tiny shapes on the CPU (seconds)")
    ap.add_argument("--recipes", default="reference,ours",
                    help="comma list of reference, ours, ours_fp32_master, each optionally "
                    "RECIPE@SCOPE[:MODE][+FLAG...] (compilation; see the docstring)")
    add_step_arguments(ap)
    return ap.parse_args(argv)


def add_speedups(figures: Dict[str, Dict[str, Any]]) -> None:
    """Same-run samples/s ratios: every recipe against `reference`, and against eager `ours`."""
    for base in ("reference", "ours"):
        base_rate = figures.get(base, {}).get("samples_per_s")
        for name, fig in figures.items():
            if base_rate and "samples_per_s" in fig and name not in (base, "reference"):
                fig[f"speedup_vs_{base}"] = round(fig["samples_per_s"] / base_rate, 3)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    device = pick_device("cpu" if args.toy and args.device is None else args.device)
    shape, recipes = shape_from_args(args), recipes_from_args(args)
    torch.manual_seed(0)
    figures, flops = {}, None
    for recipe in recipes:
        out = run_recipe(recipe, shape, device, args.peak_tflops * 1e12)
        figures[recipe.name], flops = out["result"], out["flops"] or flops
        print(f"{recipe.name}: {figures[recipe.name]}", flush=True)
    for fig in figures.values():  # the runner recipe's MFU, from the FLOPs another recipe counted
        if flops and "mfu" not in fig and "step_ms_mean" in fig:
            fig["mfu"] = float(f"{flops['needed'] / (fig['step_ms_mean'] / 1e3 * args.peak_tflops * 1e12):.4g}")
    add_speedups(figures)
    result = {"bench": "train_step", "toy": args.toy, **machine_info(device), "peak_tflops": args.peak_tflops,
              "shape": shape, "flops_per_step": flops, "recipes": figures,
              "speedup_ours_vs_reference": figures.get("ours", {}).get("speedup_vs_reference")}
    emit(result)
    return result


if __name__ == "__main__":
    main()
