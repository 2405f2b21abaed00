"""Benchmark CaMML's training step: the same model with and without the camml_perceiver context, one run.

    python -m bench.bench_camml --toy          # CPU, tiny shapes, seconds (tests/bench)
    python -m bench.bench_camml                # GPU: CLIP ViT-L/14-336 + LLaMA-7B shapes, perceiver 768/12/2, Q=64

Both variants are the project's MultimodalLLM built from a config dict (random weights created on the
device in bf16; frozen tower, trained projector and LoRA r=8 on q/v; `--full-llm` trains the whole
LLM as the reference does). Per sample: the query image, a prompt of `--prompt-tokens` text tokens
and `--target-tokens` answer tokens; the CaMML variant adds `--shots` retrieved examples (an image +
a `--shot-text-tokens` text each) read by the perceiver into 2Q context tokens written into the
prompt. Inputs are random tensors already on the device (data loading and retrieval not timed here).

Reported (one JSON line at the end): per variant the mean step seconds, sequence length, trained
tokens/s (sequence tokens per second), FLOPs per step counted by torch's FlopCounterMode over one
step (forward + backward, what autograd executes) and MFU against `--peak-tflops` (989: H100/H200
dense bf16); the step-time ratio CaMML / no context (the issue's target: <= 1.3 at 3 shots, 7B);
the context tokens' share of the CaMML sequence; the retrieval cost per sample: exact inner-product
search (faiss Flat, `--db-rows` x `--db-dim`, ImageBind-Huge's 1024-d) of a batch of queries, per query.
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Dict

import numpy as np
import torch
from omegaconf import OmegaConf

from bench.common import DTYPES, emit, free_memory, machine_info, pick_device, reset_peak_memory, peak_memory_gib
from mmrag.models.multimodal_llm import MultimodalLLM
from mmrag.processors.tokenization import CONTEXT_PLACEHOLDER_ID, IGNORE_INDEX, IMAGE_PLACEHOLDER_ID
from mmrag.processors.tokenizers import TokenIds
from mmrag.runners.train_step import build_on, build_optimizer

SHAPES = {
    "7b": {"tower": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                     "image_size": 336, "patch_size": 14},
           "llm": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
                   "num_key_value_heads": 32, "max_position_embeddings": 4096},
           "perceiver": {"width": 768, "heads": 12, "layers": 2, "queries": 64}, "vocab": 32000},
    "toy": {"tower": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                      "image_size": 32, "patch_size": 16},
            "llm": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                    "num_key_value_heads": 4, "max_position_embeddings": 1024},
            "perceiver": {"width": 32, "heads": 4, "layers": 2, "queries": 4}, "vocab": 1000},
}


def model_config(shape: Dict[str, Any], context: bool, full_llm: bool, dtype: str = "float32") -> Any:
    """`dtype` the LLM's (model.llm.dtype: without it the LLM is cast to its float32 default, whatever
    dtype the rest is built in)."""
    cfg = {"arch": "mm_llm",
           "vision_tower": {"type": "hf_clip", "config": shape["tower"], "select_layer": -2},
           "llm": {"config": shape["llm"], "freeze": not full_llm, "dtype": dtype},
           "lora": {"enabled": not full_llm, "r": 8, "alpha": 16, "dropout": 0.0},
           "context_module": {"type": "camml_perceiver", **shape["perceiver"], "random_shots": False} if context
           else {"type": "none"}}
    return OmegaConf.merge(MultimodalLLM.default_config(cfg), cfg)


def make_batch(model: MultimodalLLM, args, context: bool, device: torch.device, vocab: int) -> Dict[str, Any]:
    """Random ids laid out as [BOS] [context] <image> prompt answer, labels on the answer only."""
    g = torch.Generator().manual_seed(0)
    b, nv = args.batch, model.num_visual_tokens
    n_ctx = model.context_module.num_tokens(args.shots) if context else 0
    text = torch.randint(3, vocab, (b, args.prompt_tokens + args.target_tokens), generator=g)
    ids = torch.cat([torch.ones(b, 1, dtype=torch.long), torch.full((b, n_ctx), CONTEXT_PLACEHOLDER_ID),
                     torch.full((b, nv), IMAGE_PLACEHOLDER_ID), text], dim=1)
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, -args.target_tokens:] = ids[:, -args.target_tokens:]
    size = model.vision_tower.image_size
    batch = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids),
             "pixel_values": torch.randn(b, 3, size, size, generator=g).to(device)}
    if context:
        n = b * args.shots
        batch["context"] = {"pixel_values": torch.randn(n, 3, size, size, generator=g).to(device),
                            "image_counts": torch.full((b,), args.shots),
                            "text_ids": torch.randint(3, vocab, (n, args.shot_text_tokens), generator=g),
                            "text_mask": torch.ones(n, args.shot_text_tokens, dtype=torch.long),
                            "text_counts": torch.full((b,), args.shots)}
    return batch


def run_variant(args, context: bool, device: torch.device) -> Dict[str, Any]:
    shape = SHAPES["toy" if args.toy else "7b"]
    dtype = DTYPES[args.dtype]
    torch.manual_seed(0)
    with build_on(device, dtype):
        model = MultimodalLLM(model_config(shape, context, args.full_llm, args.dtype),
                              TokenIds(shape["vocab"], 0, 2)).to(device)
    if context:  # the perceiver is trained in fp32 master weights only under --dtype float32; bf16 here
        model.context_module.to(dtype)
    model.train()
    opt = build_optimizer(model, lr=1e-5)
    batch = make_batch(model, args, context, device, shape["vocab"])

    def step() -> None:
        out = model(batch)
        (out["loss_sum"] / out["n_tokens"].clamp(min=1)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    from torch.utils.flop_counter import FlopCounterMode

    reset_peak_memory(device)
    for _ in range(args.warmup):
        step()
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / args.steps
    seq = batch["input_ids"].shape[1]
    n_ctx = int((batch["input_ids"] == CONTEXT_PLACEHOLDER_ID).sum(dim=1)[0])
    result = {"step_s": seconds, "seq_len": seq, "tokens_per_s": args.batch * seq / seconds,
              "flops_per_step": flops, "mfu": flops / seconds / (args.peak_tflops * 1e12),
              "context_tokens": n_ctx, "context_share": n_ctx / seq, "trainable_params": model.num_trainable(),
              "llm_dtype": str(model.llm.get_input_embeddings().weight.dtype).removeprefix("torch."),
              "peak_memory_gib": peak_memory_gib(device)}
    del model, opt, batch
    free_memory(device)
    return result


def retrieval_cost(rows: int, dim: int, queries: int) -> Dict[str, Any]:
    """Seconds per query of an exact inner-product search over `rows` normalised vectors: faiss Flat on
    the CPU where faiss is installed, else the dense database's torch backend (GPUs when present)."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((rows, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    try:
        import faiss

        index, backend = faiss.IndexFlatIP(dim), "faiss_flat_cpu"
        index.add(base)
    except ImportError:
        from mmrag.retrieval.exact_search import TorchExactIndex

        index = TorchExactIndex(base)
        backend = f"torch_exact_{index.parts[0][1].device.type}"
        index.search(base[:queries], 11)  # warm-up: kernels, allocator
    q = base[rng.integers(0, rows, queries)]
    start = time.perf_counter()
    index.search(q, 11)  # k_train 10 + the query itself, excluded afterwards
    return {"rows": rows, "dim": dim, "queries": queries, "backend": backend,
            "search_s_per_query": (time.perf_counter() - start) / queries}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="CPU-sized shapes (a few seconds)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on the CPU")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--shots", type=int, default=3)
    ap.add_argument("--prompt-tokens", type=int, default=None, help="default 400 (toy 32)")
    ap.add_argument("--target-tokens", type=int, default=None, help="default 120 (toy 8)")
    ap.add_argument("--shot-text-tokens", type=int, default=None, help="default 300 (toy 24)")
    ap.add_argument("--full-llm", action="store_true", help="train every LLM weight (the reference) instead of LoRA")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--db-rows", type=int, default=None, help="default 665000 (toy 2000)")
    ap.add_argument("--db-dim", type=int, default=1024)
    args = ap.parse_args()
    device = pick_device("cpu" if args.toy and args.device is None else args.device)
    args.dtype = args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    toy = args.toy
    args.prompt_tokens = args.prompt_tokens or (32 if toy else 400)
    args.target_tokens = args.target_tokens or (8 if toy else 120)
    args.shot_text_tokens = args.shot_text_tokens or (24 if toy else 300)
    if toy:
        args.batch, args.steps, args.warmup = min(args.batch, 2), min(args.steps, 2), 1
    plain = run_variant(args, False, device)
    camml = run_variant(args, True, device)
    emit({"device": machine_info(device), "shape": "toy" if toy else "7b", "batch": args.batch, "shots": args.shots,
          "dtype": args.dtype, "no_context": plain, "camml": camml,
          "step_ratio_camml_vs_no_context": camml["step_s"] / plain["step_s"],
          "context_share": camml["context_share"],
          "retrieval": retrieval_cost(args.db_rows or (2000 if toy else 665000), 64 if toy else args.db_dim, 64)})


if __name__ == "__main__":
    main()
