"""Benchmark the training step of the large-setting model that sees, and the data path that feeds it.

    python -m bench.bench_seeing_step --toy                       # CPU, tiny shapes, seconds
    python -m bench.bench_seeing_step --configs lora:targets:none:64,full:targets:llm:128
    python -m bench.bench_seeing_step --loader --workers 0,2      # the train.py data path on the CPU

Step mode (`--configs`, one JSON line per configuration). The model is the project's MultimodalLLM
of train_configs/seeing_large_smollm2.yaml with RANDOM weights, built from a LlamaConfig of
SmolLM2-135M's shape (width 576, 30 layers, 9 heads / 3 KV heads, MLP 1536, 49,152 vocabulary, tied
embeddings) and a random timm tf_efficientnet_lite0 at 160 px (25 tokens of 1280 channels) behind the
2-layer GELU projector; no asset is read. The tower's feature cache is filled once before timing and
batches carry their `image_keys`, as the processor's batches do: the steady state of a run, whose
frozen tower's features are all cached after the first epoch (`--tower live` runs the tower instead).
Weights in bf16, trained weights in bf16 (the runner's `run.param_dtype: bfloat16`), fused AdamW, the
runner's TrainStep. Rows are `--seq-len` tokens (BOS, one image at position 8, the last
`--target-tokens` the loss targets), no padding; inputs are on the CPU as collated batches are.

A configuration is `TRAIN:LOGITS:COMPILE[:MODE]:MICROBATCH`:
  TRAIN    full (every LLM weight trained) | lora (r16/alpha 32 on q/k/v/o, LLM frozen)
  LOGITS   targets (model.loss_logits: LM head at target positions) | all (full-vocabulary logits)
  COMPILE  none | layers | llm | model (run.compile), MODE default | reduce-overhead (CUDA graphs) | ...

MFU = 6 x non-embedding parameters x tokens per step / step time / --peak-tflops (790: what a large
bf16 matmul reaches on an H200), the convention of issue 16's anchor (a plain HF step of SmolLM2-135M:
172k tokens/s full fine-tuning, 99k LoRA r16, batch 64 x 256).

Loader mode (`--loader`): batches/s of train.py's loader alone on the CPU for the real config
(dataset/world_small, the SmolLM2 tokenizer), through the runner's own step source and DataLoader
for each `--workers` count, plus the per-batch cost in the training process of the feature-cache
keys (hashing the pixels when the batch carries no `image_keys`), and a per-stage profile of one
batch: image decode, preprocessing, pixel hashing, tokenisation, padding.
"""
from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from omegaconf import OmegaConf

from bench.common import BenchError, StepTimer, emit, free_memory, machine_info, peak_memory_gib, pick_device, \
    reset_peak_memory
from mmrag.models.feature_cache import FeatureCache
from mmrag.models.multimodal_llm import MultimodalLLM
from mmrag.processors.image_processing import pixel_key
from mmrag.processors.tokenization import IGNORE_INDEX, IMAGE_PLACEHOLDER_ID
from mmrag.processors.tokenizers import TokenIds
from mmrag.runners import compilation, train_step

SMOLLM2 = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
           "num_key_value_heads": 3, "head_dim": 64, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
           "rope_theta": 100000.0, "tie_word_embeddings": True, "vocab_size": 49152}
TOY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
       "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 256, "tie_word_embeddings": True,
       "vocab_size": 512}
DEFAULT_CONFIGS = ",".join(f"{t}:{lg}:none:{mb}" for t in ("full", "lora") for lg in ("targets", "all")
                           for mb in (32, 64, 128))
IMAGE_AT = 8
CONFIG = "train_configs/seeing_large_smollm2.yaml"


def parse_config(text: str) -> Dict[str, Any]:
    parts = text.split(":")
    if len(parts) not in (4, 5):
        raise BenchError(f"--configs: {text!r} is not TRAIN:LOGITS:COMPILE[:MODE]:MICROBATCH")
    train, logits, scope, *mode, batch = parts
    if train not in ("full", "lora") or logits not in ("targets", "all"):
        raise BenchError(f"--configs: {text!r}: TRAIN is full|lora, LOGITS targets|all")
    mode = mode[0] if mode else "default"
    try:
        compilation.check_choice("compile scope", scope, compilation.COMPILE_SCOPES)
        compilation.check_choice("compile mode", mode, compilation.COMPILE_MODES)
    except compilation.CompileOptionError as err:
        raise BenchError(f"--configs: {text!r}: {err}") from err
    if scope == "none" and mode != "default":
        raise BenchError(f"--configs: {text!r} sets a compile mode but compiles nothing")
    return {"name": text, "train": train, "logits": logits, "compile": scope, "compile_mode": mode,
            "micro_batch": int(batch)}


def model_config(llm_shape: Dict[str, Any], cfg: Dict[str, Any], toy: bool, tower: str) -> Dict[str, Any]:
    """The model: section of seeing_large_smollm2.yaml with random weights (no path, no asset)."""
    llm = {k: v for k, v in llm_shape.items() if k != "vocab_size"}
    return {
        "arch": "mm_llm",
        "vision_tower": {"type": "timm", "model_name": "tf_efficientnet_lite0", "feature_map": "head",
                         "image_size": 64 if toy else 160, "select_feature": "patch",
                         "image_mean": [0.5] * 3, "image_std": [0.5] * 3},
        "projector": {"type": "mlp_gelu", "depth": 2},
        "llm": {"config": llm, "dtype": "bfloat16", "attn_implementation": "sdpa", "freeze": cfg["train"] == "lora"},
        "lora": {"enabled": cfg["train"] == "lora", "r": 16, "alpha": 32, "dropout": 0.05,
                 "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        "conversation_template": "chatml",
        "loss_logits": cfg["logits"],
        "max_txt_len": 4096,
    }


def build_model(llm_shape, cfg, device, toy: bool, tower: str) -> MultimodalLLM:
    mcfg = model_config(llm_shape, cfg, toy, tower)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    ids = TokenIds(llm_shape["vocab_size"], 2, 2)
    with train_step.build_on(device, dtype):
        model = MultimodalLLM(OmegaConf.merge(MultimodalLLM.default_config(mcfg), mcfg), token_ids=ids)
    train_step.cast_weights(model, "bfloat16" if device.type == "cuda" else None, None)
    if tower == "cached":  # in memory only: the bench never writes a cache folder
        model.vision_tower.cache = FeatureCache(None, "bench")
    model.compiled_modules = compilation.compile_model(model, cfg["compile"], cfg["compile_mode"])
    return model.train()


def random_batch(model: MultimodalLLM, batch: int, seq: int, n_target: int, seed: int) -> Dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    n_visual, vocab = model.num_visual_tokens, model.token_ids.vocab_size
    if IMAGE_AT + n_visual + n_target >= seq:
        raise BenchError(f"--seq-len {seq} too short for {n_visual} visual tokens + {n_target} targets")
    ids = torch.randint(3, vocab, (batch, seq), generator=gen)
    ids[:, 0] = 1
    ids[:, IMAGE_AT:IMAGE_AT + n_visual] = IMAGE_PLACEHOLDER_ID
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, -n_target:] = ids[:, -n_target:]
    size = model.vision_tower.image_size
    pixels = torch.randn(batch, 3, size, size, generator=gen)
    out = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids), "pixel_values": pixels}
    if model.vision_tower.cache is not None:
        out["image_keys"] = [pixel_key(p) for p in pixels]
    return out


def param_counts(model: MultimodalLLM) -> Dict[str, int]:
    causal = compilation.causal_lm(model)
    embed = causal.get_input_embeddings().weight.numel()
    llm_all = sum(p.numel() for n, p in causal.named_parameters() if "lora_" not in n)
    return {"llm_non_embedding": llm_all - embed, "trainable": model.num_trainable(),
            "projector": sum(p.numel() for p in model.projector.parameters())}


def measure(cfg: Dict[str, Any], args, device: torch.device) -> Dict[str, Any]:
    llm_shape = TOY if args.toy else SMOLLM2
    torch.manual_seed(0)
    torch._dynamo.utils.counters.clear()  # compile_stats: this configuration's graphs only
    reset_peak_memory(device)
    start = time.perf_counter()
    model = build_model(llm_shape, cfg, device, args.toy, args.tower)
    build_s = time.perf_counter() - start
    optimizer = train_step.build_optimizer(model, "adamw", lr=1e-4, weight_decay=0.0)
    step = train_step.TrainStep(model, optimizer, amp="no", max_grad_norm=1.0,
                                cudagraphs=cfg["compile"] != "none" and compilation.uses_cudagraphs(cfg["compile_mode"]))
    mb, seq = cfg["micro_batch"], args.seq_len
    batches = [random_batch(model, mb, seq, args.target_tokens, seed) for seed in range(2)]
    tower_dtype = next(model.vision_tower.parameters()).dtype
    for b in batches:
        b["pixel_values"] = b["pixel_values"].to(device, tower_dtype)
        if "image_keys" in b:  # fill the cache: every timed step is a lookup, as a run after its first epoch
            with torch.no_grad():
                feats = model.vision_tower._cnn_tokens(b["pixel_values"]).cpu()
            model.vision_tower.cache.memory.update(zip(b["image_keys"], feats))
    units = float(args.target_tokens * mb)
    first = time.perf_counter()
    losses = [step([batches[0]], units)]
    float(losses[-1])
    first_step_s = time.perf_counter() - first
    for i in range(args.warmup - 1):
        step([batches[(i + 1) % 2]], units)
    timer = StepTimer(device)
    timer.mark()
    for i in range(args.steps):
        losses.append(step([batches[i % 2]], units))
        timer.mark()
    seconds = timer.step_seconds()
    final = float(losses[-1]) / units
    if not torch.isfinite(torch.tensor(final)):
        raise BenchError(f"{cfg['name']}: the loss became {final}")
    counts = param_counts(model)
    cache = model.vision_tower.cache
    mean = float(seconds.mean())
    tokens = mb * seq
    six_nd = 6 * counts["llm_non_embedding"] * tokens
    result = {"config": cfg["name"], **{k: v for k, v in cfg.items() if k != "name"}, "seq_len": seq,
              "target_tokens": args.target_tokens, "tower": args.tower,
              "cache_misses_timed": cache.misses if cache is not None else None,
              "tokens_per_s": round(tokens / mean, 1), "samples_per_s": round(mb / mean, 2),
              "step_ms_mean": round(mean * 1e3, 3), "step_ms_min": round(float(seconds.min()) * 1e3, 3),
              "mfu_6nd": float(f"{six_nd / (mean * args.peak_tflops * 1e12):.4g}"),
              "mfu_6nd_at_989": float(f"{six_nd / (mean * 989e12):.4g}"),  # the anchor's 11% is at 989
              "params": counts, "peak_memory_gib": peak_memory_gib(device), "final_loss": round(final, 4),
              "build_s": round(build_s, 2), "first_step_s": round(first_step_s, 2),
              "compiled_modules": getattr(model, "compiled_modules", [])}
    if cfg["compile"] != "none":
        result["compile_stats"] = compilation.compile_stats()
    del step, optimizer, model, batches
    return result


def run_config(cfg: Dict[str, Any], args, device: torch.device) -> Dict[str, Any]:
    """measure(), with an out-of-memory or a compiled configuration's failure recorded, not raised."""
    try:
        out = measure(cfg, args, device)
    except torch.OutOfMemoryError as err:
        out = {"config": cfg["name"], "error": f"out of memory: {str(err).splitlines()[0]}"}
    except Exception as err:  # noqa: BLE001 - printed with its traceback; eager failures are bugs
        if cfg["compile"] == "none":
            raise
        traceback.print_exc()
        out = {"config": cfg["name"], "error": f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:400]}"}
    torch._dynamo.reset()
    free_memory(device)
    return out


# ---------------------------------------------------------------------------------------------- loader

def _best_seconds(fn, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def loader_bench(args) -> Dict[str, Any]:
    """train.py's data path for CONFIG on the CPU: the runner's step source, DataLoader, collation."""
    import mmrag  # noqa: F401  (registers builders and tasks)
    from torch.utils.data import DataLoader

    from mmrag.common.config import build_config
    from mmrag.common.registry import TASKS
    from mmrag.processors import tokenization
    from mmrag.processors.image_processing import open_rgb
    from mmrag.processors.multimodal_processor import MultimodalProcessor, VisualInputSpec
    from mmrag.runners.batch_plan import BatchPlan
    from mmrag.runners.runner import _StepSource

    cfg = build_config(args.cfg_path, [f"run.batch_size={args.loader_batch}"])
    task = TASKS.get(cfg.run.task)(cfg)
    spec = VisualInputSpec(25, int(cfg.model.vision_tower.image_size), tuple(cfg.model.vision_tower.image_mean),
                           tuple(cfg.model.vision_tower.image_std), image_keys=args.image_keys)
    processor = MultimodalProcessor.from_config(cfg.model, spec)
    datasets, ratios = task.build_train_datasets(cfg, processor)
    collate = task.collate_fn(processor)
    steps = args.loader_batches
    plan = BatchPlan({n: len(d) for n, d in datasets.items()}, ratios, args.loader_batch, steps + 1, 0)
    out: Dict[str, Any] = {"bench": "seeing_loader", "config": args.cfg_path, "batch": args.loader_batch,
                           "image_keys_in_batch": args.image_keys, "batches": steps, "workers": {}}
    memory: Dict[str, torch.Tensor] = {}
    feature = torch.zeros(25, 1280)
    for workers in [int(w) for w in args.workers.split(",")]:
        source = _StepSource(plan, datasets, collate, 0, steps + 1, 0, 1, 1)
        loader = DataLoader(source, batch_size=None, shuffle=False, num_workers=workers,
                            persistent_workers=False)
        it = iter(loader)
        next(it)  # start-up (worker processes) not counted
        start, lookup_s, tokens = time.perf_counter(), 0.0, 0
        for micro in it:
            for b in micro:
                t = time.perf_counter()
                # the training process's share: the feature cache's keys (hashing when none came with the batch)
                keys = b.get("image_keys") or [pixel_key(p) for p in b["pixel_values"]]
                torch.stack([memory.setdefault(k, feature) for k in keys])
                lookup_s += time.perf_counter() - t
                tokens += int(b["attention_mask"].sum())
        wall = time.perf_counter() - start
        out["workers"][str(workers)] = {"batches_per_s": round(steps / wall, 2),
                                        "samples_per_s": round(steps * args.loader_batch / wall, 1),
                                        "tokens_per_batch": round(tokens / steps, 1),
                                        "main_process_key_ms_per_batch": round(lookup_s / steps * 1e3, 3)}
        print(f"workers={workers}: {out['workers'][str(workers)]}", flush=True)
    # one batch, stage by stage, in this process: the best of 5 repeats (the CPU may be shared)
    name = max(datasets, key=lambda n: ratios[n])
    ds = datasets[name]
    recs = [ds.records[i] for i in range(min(args.loader_batch, len(ds)))]
    paths = [p for r in recs for p in r["images"]]
    images = [open_rgb(p) for p in paths]
    pixels = [processor.image_processor(im) for im in images]
    samples = [ds[i] for i in range(len(recs))]
    memo = getattr(tokenization, "_MEMO", None)

    def tokenize(fresh: bool):
        if fresh and memo is not None:
            memo.clear()  # the first epoch: nothing remembered yet
        return [processor.encode_conversation(r["conversations"], len(r["images"])) for r in recs]

    stages = {"decode": lambda: [open_rgb(p) for p in paths],
              "preprocess": lambda: [processor.image_processor(im) for im in images],
              "pixel_hash": lambda: [pixel_key(p) for p in pixels],
              "tokenize_first_epoch": lambda: tokenize(True), "tokenize_later_epochs": lambda: tokenize(False),
              "dataset_getitem_total": lambda: [ds[i] for i in range(len(recs))],
              "collate_of_loaded_samples": lambda: processor.collate(samples)}
    profile: Dict[str, Any] = {"dataset": name, "images": len(paths), "samples": len(recs)}
    for stage, fn in stages.items():
        profile[stage] = round(_best_seconds(fn) * 1e3, 2)
    profile["mean_tokens"] = round(sum(len(e.input_ids) for e in tokenize(False)) / len(recs), 1)
    out["profile_ms_per_batch"] = profile
    return out


# ---------------------------------------------------------------------------------------------- main

def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="tiny shapes on the CPU (seconds)")
    ap.add_argument("--configs", default=None, help=f"comma list of TRAIN:LOGITS:COMPILE[:MODE]:MICROBATCH "
                    f"(default {DEFAULT_CONFIGS})")
    ap.add_argument("--seq-len", dest="seq_len", type=int, default=None, help="tokens per row (default 256)")
    ap.add_argument("--target-tokens", dest="target_tokens", type=int, default=None, help="loss targets per row (32)")
    ap.add_argument("--tower", default="cached", choices=["cached", "live"])
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--peak-tflops", type=float, default=790.0)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None, help="also append each JSON line to this file")
    ap.add_argument("--loader", action="store_true", help="measure train.py's data path on the CPU instead")
    ap.add_argument("--cfg-path", default=CONFIG)
    ap.add_argument("--workers", default="0,2", help="loader: comma list of num_workers")
    ap.add_argument("--loader-batch", type=int, default=32)
    ap.add_argument("--loader-batches", type=int, default=20)
    ap.add_argument("--no-image-keys", dest="image_keys", action="store_false",
                    help="loader: batches without image_keys (the training process hashes the pixels)")
    return ap.parse_args(argv)


def write(line: Dict[str, Any], out: Optional[str]) -> None:
    emit(line)
    if out:
        with open(out, "a") as fh:
            fh.write(json.dumps(line) + "\n")


def main(argv: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    args = parse_args(argv)
    if args.loader:
        result = {**loader_bench(args), **machine_info(torch.device("cpu"))}
        write(result, args.out)
        return [result]
    device = pick_device("cpu" if args.toy and args.device is None else args.device)
    toy_defaults = {"seq_len": 48, "target_tokens": 8, "warmup": 1, "steps": 2}
    real_defaults = {"seq_len": 256, "target_tokens": 32, "warmup": 3, "steps": 10}
    for key, value in (toy_defaults if args.toy else real_defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    configs = [parse_config(c) for c in (args.configs or DEFAULT_CONFIGS).split(",") if c.strip()]
    if any(c["compile"] != "none" for c in configs):
        args.warmup = max(args.warmup, 3)
    info = {**machine_info(device), "peak_tflops": args.peak_tflops}
    results = []
    for cfg in configs:
        line = {"bench": "seeing_step", "toy": args.toy, **run_config(cfg, args, device), **info}
        write(line, args.out)
        results.append(line)
    return results


if __name__ == "__main__":
    main()
