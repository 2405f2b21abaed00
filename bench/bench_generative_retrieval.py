"""Benchmark constrained clue decoding: queries/s and the share of decode time the corpus constraint costs.

    python -m bench.bench_generative_retrieval --toy               # CPU, tiny LLM + 20k-token corpus, seconds
    python -m bench.bench_generative_retrieval                     # GPU: LLaMA-7B shape bf16, 10M-token corpus

A LLaMA-7B-shaped causal LM (random weights, built on the device in bf16 through the project's
`load_llm`) is fed prompts of `--prompt-len` random embeddings (inputs_embeds, as GeMKR feeds its
spliced prompt), `--queries` prompts a batch. Clues of up to `--clue-len` tokens (+ EOS) are decoded
with `--beams` beams against an in-memory corpus index of Zipf-distributed token ids. Modes (`--modes`):
  ours          the project's group_beam_search (beams/groups = 10/10, diversity 0.5) + CorpusConstrainedLogitsProcessor,
                decoder `auto` (the shared-prompt decoder for the LLaMA layout)
  ours_device   `ours` with DeviceCorpusConstraint: the index's tables on the device, the ranges following the
                beams by tensor ops queued behind each step's forward (no host index work, no mask upload)
  ours_device_fused  `ours_device` with decoder `shared_prompt_fused`: [q;k;v] and [gate;up] weights concatenated
                (2 wide matmuls a layer instead of 5 narrow ones in the decode step; no LoRA)
  ours_noop     the same search with a processor that changes nothing: the unconstrained decode cost
                (on a GPU: CUDA graphs kept across batches in a BeamGraphWorkspace; the warm-up batch captures)
  ours_eager    `ours` without CUDA graphs (every step's kernels launched from Python)
  ours_hf_cache `ours` with decoder `hf_cache` (the model's own KV cache, prompt copied to every beam; no graphs)
  hf_prefix_fn  the reference mechanism: HF generate beam search with PrefixConstrainedLogitsProcessor
                (what `prefix_allowed_tokens_fn=` installs; passed as logits_processor so it can be timed)
                and a prefix function that returns per-beam Python lists from index lookups from scratch
  hf_plain      HF generate beam search, no constraint
HF transformers 5 moved diverse (group) beam search to a hub repository; where `generate` refuses
num_beam_groups, the HF modes run plain beam search (the field `hf_search` says which).
Constraint share = (t_constrained - t_unconstrained) / t_constrained per query. The processor's own time:
for `ours*` the host seconds of its `prepare` calls (no syncs; they overlap the step's forward), for
`hf_prefix_fn` a wrapper that synchronises the device before and after each call.
Random weights make the model's choices near-uniform among allowed tokens: beams follow rarer
continuations than a trained model would, so per-step allowed sets are smaller than in a real run.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from transformers import LogitsProcessorList
from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

from bench.common import (DTYPES, BenchError, TimedCall, emit, machine_info, pick_device,
                          sync, zipf_passages)
from mmrag.models.llm import LLM_DEFAULTS, load_llm
from mmrag.runners.train_step import build_on
from mmrag.retrieval.beam_decoders import BeamGraphWorkspace
from mmrag.retrieval.constrained_decoding import CorpusConstrainedLogitsProcessor
from mmrag.retrieval.device_constraint import DeviceCorpusConstraint
from mmrag.retrieval.group_beam_search import group_beam_search
from mmrag.retrieval.corpus_index import CorpusIndex

BOS, EOS, PAD = 1, 2, 0
OKVQA_GS112K_TEST_QUERIES = 5046
LLAMA_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6}
TOY_LLM = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 4, "max_position_embeddings": 256}
MODES = ("ours", "ours_device", "ours_device_fused", "ours_noop", "ours_eager", "ours_hf_cache", "hf_prefix_fn", "hf_plain")


class NoOpProcessor:
    """Same interface as CorpusConstrainedLogitsProcessor, changes nothing: the decode cost alone."""

    def reset(self) -> None:
        pass

    def prepare(self, clue_tokens: torch.Tensor, vocab: int, device: torch.device) -> None:
        return None

    def apply(self, prepared: None, scores: torch.Tensor) -> torch.Tensor:
        return scores


def reference_prefix_fn(index: CorpusIndex, vocab: int, min_clue_len: int, max_clue_len: int) -> Callable:
    """The reference's prefix_allowed_tokens_fn: per beam a Python list, the generated prefix looked up in
    the index from the root at every step (step 0: every token in the corpus; EOS once long enough)."""
    root = [int(t) for t in index.occurring_tokens() if t < vocab]

    def allowed(batch_id: int, generated: torch.Tensor) -> List[int]:
        clue = generated.tolist()  # inputs_embeds prompts: generate passes the new tokens only
        if not clue:
            return root
        if EOS in clue or len(clue) >= max_clue_len:
            return [EOS]
        tokens, _ = index.continuations(clue)
        listed = [int(t) for t in tokens if t < vocab]
        return listed + [EOS] if len(clue) >= min_clue_len or not listed else listed

    return allowed


class ForwardCounter:
    """Counts prefill calls (the first layer's norm over more than one position: the model's own forward
    and the shared-prompt decoder's prefill, which runs the layers itself) and their batch sizes, and
    decode forwards (LM-head calls that are not a prefill's)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.prefill_batches: List[int] = []
        self.head_calls = 0
        first_norm = model.get_decoder().layers[0].input_layernorm
        self._handles = [first_norm.register_forward_pre_hook(self._prefill_hook),
                         model.get_output_embeddings().register_forward_pre_hook(self._head_hook)]

    def _prefill_hook(self, module, args) -> None:
        hidden = args[0]  # (batch, positions, hidden)
        if hidden.shape[1] > 1:
            self.prefill_batches.append(int(hidden.shape[0]))

    def _head_hook(self, module, args) -> None:
        self.head_calls += 1

    @property
    def decode_calls(self) -> int:
        return self.head_calls - len(self.prefill_batches)

    def clear(self) -> None:
        self.prefill_batches, self.head_calls = [], 0

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class HostTimedProcessor:
    """A two-phase processor (prepare on the host, apply on the device) with its host time added up.

    No device syncs: `prepare` runs while the step's forward runs on the GPU, so its seconds are host
    time that the overlap may hide; what the constraint really costs is ours vs ours_noop end to end.
    """

    def __init__(self, processor) -> None:
        self.processor = processor
        self.seconds, self.calls = 0.0, 0
        self.tracks_rows = getattr(processor, "tracks_rows", False)  # device constraint: start/advance

    def start(self, rows: int, vocab: int):
        return self._timed(self.processor.start, rows, vocab)

    def advance(self, parent_rows: torch.Tensor, tokens: torch.Tensor):
        return self._timed(self.processor.advance, parent_rows, tokens)

    def _timed(self, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out

    def reset(self) -> None:
        self.processor.reset()

    def prepare(self, clue_tokens: torch.Tensor, vocab: int, device: torch.device):
        start = time.perf_counter()
        out = self.processor.prepare(clue_tokens, vocab, device)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out

    def apply(self, prepared, scores: torch.Tensor) -> torch.Tensor:
        return self.processor.apply(prepared, scores)

    def clear(self) -> None:
        self.seconds, self.calls = 0.0, 0


def build_corpus_index(args, out_dir: Path) -> Dict[str, Any]:
    passages = zipf_passages(args.corpus_tokens, args.vocab, args.zipf, args.passage_len, args.seed)
    fingerprint = {"name": "synthetic-zipf", "vocab_size": args.vocab, "vocab_sha256": "synthetic"}
    start = time.perf_counter()
    options = {} if args.frequent_min_count is None else {"frequent_min_count": args.frequent_min_count}
    index = CorpusIndex.build_from_token_ids([str(i) for i in range(len(passages))], passages, out_dir, fingerprint,
                                             **options)
    return {"index": index, "build_s": round(time.perf_counter() - start, 2), "passages": len(passages)}


def build_model(args, device: torch.device):
    cfg = {**LLM_DEFAULTS, "config": dict(TOY_LLM if args.toy else LLAMA_7B), "dtype": args.dtype,
           "attn_implementation": args.attn}
    if args.llm_layers is not None:
        cfg["config"]["num_hidden_layers"] = args.llm_layers
    with build_on(device, DTYPES[args.dtype]):
        model = load_llm(cfg, vocab_size=args.vocab)
    return model.eval().requires_grad_(False)


def random_prompts(args, model, device: torch.device, batches: int) -> List[torch.Tensor]:
    """`batches` tensors [queries, prompt_len, hidden], scaled like the model's token embeddings."""
    gen = torch.Generator().manual_seed(args.seed)
    emb = model.get_input_embeddings().weight
    scale = float(emb[:1000].float().std())
    shape = (args.queries, args.prompt_len, emb.shape[1])
    return [(torch.randn(shape, generator=gen) * scale).to(device, emb.dtype) for _ in range(batches)]


def hf_supports_group_beam(model, prompt: torch.Tensor) -> bool:
    """Whether this transformers' generate runs num_beam_groups > 1 offline (5.x moved it to the hub)."""
    try:
        model.generate(inputs_embeds=prompt[:1], num_beams=2, num_beam_groups=2, diversity_penalty=0.5,
                       max_new_tokens=1, pad_token_id=PAD, eos_token_id=EOS, do_sample=False)
    except ValueError as err:  # "Group Beam Search requires trust_remote_code=True ..."
        print(f"HF group beam search unavailable, HF modes use plain beam search: {str(err)[:120]}", flush=True)
        return False
    return True


def decoders(args, model, index: Optional[CorpusIndex], device: torch.device, group_hf: bool) -> Dict[str, Any]:
    """mode -> (decode function of one prompt batch, timed processor or None)."""
    beams, new_tokens = args.beams, args.clue_len + 1  # the clue, then EOS
    workspaces = {name: BeamGraphWorkspace() for name in ("ours", "ours_device", "ours_device_fused", "ours_noop")}  # graphs kept across batches
    ours_kw = {"eos_token_id": EOS, "num_beams": beams, "num_beam_groups": beams, "diversity_penalty": args.diversity,
               "length_penalty": 1.5, "max_new_tokens": new_tokens}
    hf_kw = {"num_beams": beams, "num_return_sequences": beams, "max_new_tokens": new_tokens, "length_penalty": 1.5,
             "do_sample": False, "eos_token_id": EOS, "pad_token_id": PAD}
    if group_hf:
        hf_kw.update(num_beam_groups=beams, diversity_penalty=args.diversity)
    out: Dict[str, Any] = {}
    if index is not None:
        ours_proc = HostTimedProcessor(CorpusConstrainedLogitsProcessor(index, EOS, args.min_clue_len, args.clue_len))
        out["ours"] = (lambda e: group_beam_search(model, e, ours_proc, workspace=workspaces["ours"], **ours_kw),
                       ours_proc)
        dev_proc = HostTimedProcessor(DeviceCorpusConstraint(index, EOS, args.min_clue_len, args.clue_len, device=device))
        out["ours_device"] = (lambda e: group_beam_search(model, e, dev_proc, workspace=workspaces["ours_device"],
                                                          **ours_kw), dev_proc)
        fused_proc = HostTimedProcessor(DeviceCorpusConstraint(index, EOS, args.min_clue_len, args.clue_len,
                                                               device=device))
        out["ours_device_fused"] = (lambda e: group_beam_search(model, e, fused_proc, decoder="shared_prompt_fused",
                                                                workspace=workspaces["ours_device_fused"], **ours_kw),
                                    fused_proc)
        kv_proc = HostTimedProcessor(CorpusConstrainedLogitsProcessor(index, EOS, args.min_clue_len, args.clue_len))
        out["ours_hf_cache"] = (lambda e: group_beam_search(model, e, kv_proc, decoder="hf_cache", **ours_kw), kv_proc)
        eager_proc = HostTimedProcessor(CorpusConstrainedLogitsProcessor(index, EOS, args.min_clue_len, args.clue_len))
        out["ours_eager"] = (lambda e: group_beam_search(model, e, eager_proc, cuda_graphs=False, **ours_kw), eager_proc)
        prefix_fn = reference_prefix_fn(index, args.vocab, args.min_clue_len, args.clue_len)
        hf_proc = TimedCall(PrefixConstrainedLogitsProcessor(prefix_fn, beams), device)
        constrained = LogitsProcessorList([hf_proc])
        out["hf_prefix_fn"] = (lambda e: model.generate(inputs_embeds=e, logits_processor=constrained, **hf_kw), hf_proc)
    out["ours_noop"] = (lambda e: group_beam_search(model, e, NoOpProcessor(), workspace=workspaces["ours_noop"],
                                                    **ours_kw), None)
    out["hf_plain"] = (lambda e: model.generate(inputs_embeds=e, **hf_kw), None)
    return out


def time_mode(decode: Callable, processor: Optional[Any], graphed: bool, prompts: List[torch.Tensor],
              counter: ForwardCounter, device: torch.device) -> Dict[str, Any]:
    """Queries/s over all prompt batches after one warm-up batch; processor seconds and forward counts."""
    decode(prompts[0])
    if processor is not None:
        processor.clear()
    counter.clear()
    sync(device)
    start = time.perf_counter()
    for batch in prompts[1:]:
        decode(batch)
    sync(device)
    seconds = time.perf_counter() - start
    queries = sum(len(b) for b in prompts[1:])
    fig = {"queries": queries, "seconds": round(seconds, 3), "queries_per_s": round(queries / seconds, 3),
           "ms_per_query": round(1e3 * seconds / queries, 3),
           "projected_okvqa_gs112k_test_s": round(OKVQA_GS112K_TEST_QUERIES * seconds / queries, 1),
           "prefill_batch_max": max(counter.prefill_batches, default=0),
           "prefill_calls_per_batch": len(counter.prefill_batches) / (len(prompts) - 1),
           "decode_forwards_per_batch": counter.decode_calls / (len(prompts) - 1)}
    if graphed:  # replayed steps run no Python, so the hooks see only the first two (eager, capture)
        fig["decode_python_calls_per_batch"] = fig.pop("decode_forwards_per_batch")
    if processor is not None:
        fig.update(processor_s=round(processor.seconds, 4), processor_calls=processor.calls,
                   processor_share=round(processor.seconds / seconds, 4),
                   processor_timing="host, overlapped" if isinstance(processor, HostTimedProcessor) else "synced")
    return fig


def profile_batch(decode: Callable, prompts: torch.Tensor, device: torch.device) -> Dict[str, Any]:
    """One batch under torch.profiler: host ms per group_beam_search phase, and the busiest device kernels."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    sync(device)
    with torch.profiler.profile(activities=activities) as prof:
        decode(prompts)
        sync(device)
    events = prof.key_averages()
    print(events.table(sort_by="cpu_time_total", row_limit=25), flush=True)
    phases = {e.key: round(e.cpu_time_total / 1e3, 2) for e in events if e.key.startswith("group_beam_search.")}
    device_ms = sorted(((getattr(e, "device_time_total", 0) / 1e3, e.key) for e in events), reverse=True)[:8]
    # kernels by their own device time (what the GPU ran, graph replays included), and the total
    self_ms = sorted(((getattr(e, "self_device_time_total", 0) / 1e3, e.key) for e in events), reverse=True)
    return {"host_ms_per_phase": phases, "top_device_ms": [[round(ms, 2), key[:80]] for ms, key in device_ms],
            "top_self_device_ms": [[round(ms, 2), key[:80]] for ms, key in self_ms[:15]],
            "self_device_ms_total": round(sum(ms for ms, _ in self_ms), 2)}


def constraint_share(figures: Dict[str, Dict[str, Any]], constrained: str, plain: str) -> Optional[float]:
    """(t_constrained - t_unconstrained) / t_constrained, per query; None when either mode was not run."""
    if constrained not in figures or plain not in figures:
        return None
    t_c, t_p = figures[constrained]["ms_per_query"], figures[plain]["ms_per_query"]
    return round((t_c - t_p) / t_c, 4)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="tiny LLM and corpus on the CPU (seconds)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)}")
    ap.add_argument("--corpus-tokens", type=int, default=None, help="default 10M (toy 20k)")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--frequent-min-count", type=int, default=None,
                    help="index's frequent-prefix threshold = the device window (default: the index's 4096; toy 64)")
    ap.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of the corpus token distribution")
    ap.add_argument("--passage-len", type=int, default=100, help="mean passage length in tokens")
    ap.add_argument("--queries", type=int, default=None, help="prompts per batch (default 8, toy 2)")
    ap.add_argument("--batches", type=int, default=None, help="timed batches per mode (default 3, toy 1)")
    ap.add_argument("--prompt-len", type=int, default=None, help="prompt embeddings (default 100, toy 12)")
    ap.add_argument("--beams", type=int, default=10)
    ap.add_argument("--diversity", type=float, default=0.5)
    ap.add_argument("--clue-len", type=int, default=10)
    ap.add_argument("--min-clue-len", type=int, default=2)
    ap.add_argument("--llm-layers", type=int, default=None, help="override the LLM depth (default 32)")
    ap.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="default bfloat16 (toy float32)")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"])
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="after timing, profile one batch of the first mode")
    args = ap.parse_args(argv)
    toy = args.toy
    if toy and args.frequent_min_count is None:
        args.frequent_min_count = 64  # a small window on the CPU; the tables serve every prefix seen more often
    defaults = {"corpus_tokens": 20_000 if toy else 10_000_000, "queries": 2 if toy else 8,
                "batches": 1 if toy else 3, "prompt_len": 12 if toy else 100, "dtype": "float32" if toy else "bfloat16"}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise BenchError(f"--modes {args.modes!r}: expected a comma list of {', '.join(MODES)}")
    args.modes = modes
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    device = pick_device("cpu" if args.toy and args.device is None else args.device)
    torch.manual_seed(args.seed)
    needs_index = any(m in ("ours", "ours_device", "ours_device_fused", "ours_eager", "ours_hf_cache", "hf_prefix_fn") for m in args.modes)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = build_corpus_index(args, Path(tmp)) if needs_index else {"index": None, "build_s": None, "passages": 0}
        start = time.perf_counter()
        model = build_model(args, device)
        build_model_s = time.perf_counter() - start
        prompts = random_prompts(args, model, device, args.batches + 1)
        group_hf = hf_supports_group_beam(model, prompts[0])
        modes = decoders(args, model, corpus["index"], device, group_hf)
        counter, figures = ForwardCounter(model), {}
        for name in args.modes:
            graphed = name in ("ours", "ours_device", "ours_device_fused", "ours_noop") and device.type == "cuda"
            figures[name] = time_mode(*modes[name], graphed, prompts, counter, device)
            print(f"{name}: {figures[name]}", flush=True)
        counter.remove()
        same = None
        if "ours" in args.modes and "ours_device" in args.modes:  # the device tables decode the host path's clues
            host_clues, dev_clues = (modes[m][0](prompts[1]) for m in ("ours", "ours_device"))
            same = [[c.tokens for c in q] for q in host_clues] == [[c.tokens for c in q] for q in dev_clues]
        table_bytes = modes["ours_device"][1].processor.table_bytes() if "ours_device" in modes else None
        profile = profile_batch(modes[args.modes[0]][0], prompts[-1], device) if args.profile else None
    ours = figures.get("ours") or figures.get("ours_noop") or {}
    result = {
        "bench": "generative_retrieval", "toy": args.toy, **machine_info(device),
        "llm_layers": model.config.num_hidden_layers, "hidden_size": model.config.hidden_size, "dtype": args.dtype,
        "attn": args.attn, "beams": args.beams, "beam_groups_ours": args.beams, "diversity": args.diversity,
        "clue_len": args.clue_len, "prompt_len": args.prompt_len, "queries_per_batch": args.queries,
        "corpus_tokens": args.corpus_tokens, "corpus_passages": corpus["passages"],
        "frequent_min_count": args.frequent_min_count, "index_build_s": corpus["build_s"],
        "model_build_s": round(build_model_s, 2),
        "hf_search": "group_beam_search" if group_hf else "beam_search (group beam search not in this transformers)",
        "modes": figures,
        "constraint_share_ours": constraint_share(figures, "ours", "ours_noop"),
        "constraint_share_ours_device": constraint_share(figures, "ours_device", "ours_noop"),
        "fused_speedup_vs_ours_device": (round(figures["ours_device_fused"]["queries_per_s"]
                                               / figures["ours_device"]["queries_per_s"], 3)
                                         if "ours_device_fused" in figures and "ours_device" in figures else None),
        "device_clues_equal_host": same, "device_table_bytes": table_bytes,
        "constraint_share_hf_prefix_fn": constraint_share(figures, "hf_prefix_fn", "hf_plain"),
        "group_beam_search_one_prompt_at_a_time": bool(ours) and ours["prefill_batch_max"] == 1 < args.queries,
        "okvqa_gs112k_test_queries": OKVQA_GS112K_TEST_QUERIES,
    }
    if profile is not None:
        result["profile"] = {"mode": args.modes[0], **profile}
    emit(result)
    return result


if __name__ == "__main__":
    main()
