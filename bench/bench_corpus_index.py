"""Benchmark the suffix-array corpus index on a synthetic Zipf corpus (no tokenizer involved).

    python -m bench.bench_corpus_index                    # 10M tokens (the issue's target size)
    python -m bench.bench_corpus_index --tokens 100000    # seconds, a smoke run

Measures: build time after tokenisation (tokens/s), index size (bytes/token over all files),
continuations latency per prefix length 0..10 (prefixes taken at random corpus positions, so
frequent prefixes are drawn as often as they occur), and the CPU cost of one constrained decoding
step for 10 beams (the logits processor's mask build), against a naive processor that searches
every beam's range from scratch at each step. Prints one JSON line of figures at the end.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmrag.retrieval.constrained_decoding import CorpusConstrainedLogitsProcessor
from mmrag.retrieval.corpus_index import CorpusIndex

EOS = 2


class NaiveProcessor(CorpusConstrainedLogitsProcessor):
    """Baseline: every beam's range is searched from the root at every step (what SEAL does)."""

    def _cursor(self, clue):
        return self.index.cursor(clue)


def synthetic_corpus(n_tokens: int, vocab: int, zipf_a: float, mean_len: int, seed: int):
    rng = np.random.default_rng(seed)
    draws = rng.zipf(zipf_a, size=int(n_tokens * 1.3))
    tokens = (draws[draws <= vocab - 3][:n_tokens] + 2).astype(np.int32)  # ids 3.. (0-2 are special)
    lengths = rng.integers(mean_len // 2, mean_len * 3 // 2, size=n_tokens // (mean_len // 2) + 1)
    cuts = np.cumsum(lengths)
    return np.split(tokens, cuts[cuts < len(tokens)])


def time_build(passages, vocab: int, out: Path):
    fingerprint = {"name": "synthetic", "vocab_size": vocab, "vocab_sha256": "synthetic"}
    ids = [str(i) for i in range(len(passages))]
    start, cpu_start = time.perf_counter(), time.process_time()
    CorpusIndex.build_from_token_ids(ids, passages, out, fingerprint)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    size = sum(f.stat().st_size for f in out.iterdir())
    return CorpusIndex.load(out), seconds, cpu_seconds, size


def sample_starts(index: CorpusIndex, n: int, span: int, rng) -> np.ndarray:
    """Random token positions followed by at least `span` tokens of the same passage."""
    tokens = np.asarray(index._a["tokens"])
    starts = rng.integers(0, len(tokens) - span - 1, size=n * 4)
    window = np.stack([tokens[starts + j] for j in range(span)])
    ok = (window != index.separator_id).all(axis=0)
    return starts[ok][:n]


def continuation_latency(index: CorpusIndex, n_queries: int, rng) -> dict:
    tokens = np.asarray(index._a["tokens"])
    out = {}
    for length in range(0, 11):
        starts = sample_starts(index, n_queries, max(length, 1), rng)
        wall, cpu = [], []
        for s in starts:
            prefix = tokens[s:s + length].tolist()
            c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
            index.continuations(prefix)
            wall.append(time.perf_counter_ns() - w0)
            cpu.append(time.thread_time_ns() - c0)
        out[length] = {"p50_ms": float(np.percentile(wall, 50)) / 1e6, "p99_ms": float(np.percentile(wall, 99)) / 1e6,
                       "cpu_p99_ms": float(np.percentile(cpu, 99)) / 1e6}
    return out


def step_cost(processor_cls, index: CorpusIndex, n_searches: int, beams: int, steps: int, vocab: int, rng) -> dict:
    """CPU seconds per decoding step for `beams` beams that follow real corpus text for `steps` steps."""
    tokens = np.asarray(index._a["tokens"])
    scores = torch.zeros(beams, vocab)
    cpu, wall, thread = [], [], []
    for _ in range(n_searches):
        processor = processor_cls(index, EOS, min_clue_len=1, max_clue_len=steps + 1)
        starts = sample_starts(index, beams, steps, rng)
        texts = np.stack([tokens[s:s + steps] for s in starts]).astype(np.int64)
        for length in range(steps + 1):
            ids = torch.from_numpy(texts[:, :length].copy())
            c0, t0, w0 = time.process_time(), time.thread_time(), time.perf_counter()
            processor(ids, scores)
            cpu.append(time.process_time() - c0)
            thread.append(time.thread_time() - t0)
            wall.append(time.perf_counter() - w0)
    return {"cpu_ms_mean": 1e3 * float(np.mean(cpu)), "cpu_ms_p99": 1e3 * float(np.percentile(thread, 99)),
            "wall_ms_mean": 1e3 * float(np.mean(wall)), "wall_ms_p99": 1e3 * float(np.percentile(wall, 99))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=10_000_000)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of the token distribution")
    parser.add_argument("--passage-len", type=int, default=100, help="mean passage length in tokens")
    parser.add_argument("--queries", type=int, default=2000, help="continuation queries per prefix length")
    parser.add_argument("--searches", type=int, default=100, help="simulated beam searches")
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    passages = synthetic_corpus(args.tokens, args.vocab, args.zipf, args.passage_len, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        index, build_s, build_cpu_s, size = time_build(passages, args.vocab, Path(tmp))
        latency = continuation_latency(index, args.queries, rng)
        ours = step_cost(CorpusConstrainedLogitsProcessor, index, args.searches, args.beams, 10, args.vocab, rng)
        naive = step_cost(NaiveProcessor, index, args.searches, args.beams, 10, args.vocab, rng)
    for length, f in latency.items():
        print(f"continuations prefix {length:2d}: p50 {f['p50_ms']:.4f} ms  p99 {f['p99_ms']:.4f} ms "
              f"(thread CPU p99 {f['cpu_p99_ms']:.4f} ms)")
    print(f"build {build_s:.2f} s wall ({build_cpu_s:.2f} s CPU) = {args.tokens / build_s / 1e6:.2f} M tokens/s; "
          f"size {size / args.tokens:.2f} bytes/token")
    for name, f in (("incremental", ours), ("naive from-scratch", naive)):
        print(f"{args.beams}-beam step, {name}: CPU mean {f['cpu_ms_mean']:.3f} ms, p99 {f['cpu_ms_p99']:.3f} ms; "
              f"wall mean {f['wall_ms_mean']:.3f} ms, p99 {f['wall_ms_p99']:.3f} ms")
    result = {"tokens": args.tokens, "passages": len(passages), "build_s": build_s, "build_cpu_s": build_cpu_s,
              "build_m_tokens_per_s": args.tokens / build_s / 1e6, "bytes_per_token": size / args.tokens,
              "continuations_p99_ms_max": max(v["p99_ms"] for v in latency.values()),
              "continuations_cpu_p99_ms_max": max(v["cpu_p99_ms"] for v in latency.values()),
              "continuations_p99_ms": {k: round(v["p99_ms"], 4) for k, v in latency.items()},
              "step_cpu_ms": ours["cpu_ms_mean"], "step_cpu_ms_p99": ours["cpu_ms_p99"],
              "step_wall_ms_p99": ours["wall_ms_p99"], "naive_step_cpu_ms": naive["cpu_ms_mean"],
              "naive_step_cpu_ms_p99": naive["cpu_ms_p99"], "naive_step_wall_ms_p99": naive["wall_ms_p99"]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
