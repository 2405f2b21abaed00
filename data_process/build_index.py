"""Build the suffix-array corpus index used by constrained generative retrieval (GeMKR).

    python data_process/build_index.py --corpus dataset/okvqa/okvqa_train_corpus.csv \
        --tokenizer assets/llama_tokenizer --out index/okvqa_gs112k [--shards 4] [--workers 2]

The corpus is a CSV with header `id,text` (or `kid,text`). With --shards N the passages are split
into N contiguous chunks, one index per chunk under OUT/shard_XXX plus OUT/shards.json; with
--shard-of K/N only chunk K is built (run one per node; then --write-manifest N once).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from mmrag.retrieval.corpus_index import (  # noqa: E402
    CorpusIndex, CorpusIndexError, check_passage_ids, read_id_text_csv)
from mmrag.retrieval.sharded_index import ShardedCorpusIndex, write_shard_manifest  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, help="CSV with header id,text (or kid,text)")
    parser.add_argument("--tokenizer", type=Path, required=True, help="folder of the LLM's HF tokenizer")
    parser.add_argument("--out", type=Path, required=True, help="output folder, e.g. index/okvqa_gs112k")
    parser.add_argument("--shards", type=int, default=1, help="split the corpus into this many shards")
    parser.add_argument("--shard-of", default=None, help="K/N: build only shard K of N (0-based), for one node")
    parser.add_argument("--write-manifest", type=int, default=None, metavar="N",
                        help="only write OUT/shards.json for N shards built with --shard-of")
    parser.add_argument("--workers", type=int, default=1, help="tokeniser processes")
    parser.add_argument("--batch-size", type=int, default=1024, help="passages per tokeniser batch")
    parser.add_argument("--no-text", action="store_true", help="do not store passage texts (decode tokens instead)")
    return parser.parse_args(argv)


def _build_one_shard(rows, tokenizer, args) -> None:
    k, n = (int(x) for x in args.shard_of.split("/"))
    if not 0 <= k < n:
        raise CorpusIndexError(f"--shard-of {args.shard_of}: expected K/N with 0 <= K < N")
    check_passage_ids([pid for pid, _ in rows])  # over the whole corpus, not only this shard
    bounds = np.linspace(0, len(rows), n + 1).astype(int)
    CorpusIndex.build(rows[bounds[k]:bounds[k + 1]], tokenizer, args.out / f"shard_{k:03d}", workers=args.workers,
                      batch_size=args.batch_size, store_text=not args.no_text, allow_empty=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.write_manifest:
        print(write_shard_manifest(args.out, [f"shard_{k:03d}" for k in range(args.write_manifest)]))
        return 0
    if args.corpus is None:
        raise SystemExit("--corpus is required unless --write-manifest is given")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(args.tokenizer))
    start = time.perf_counter()
    rows = read_id_text_csv(args.corpus)
    options = dict(workers=args.workers, batch_size=args.batch_size, store_text=not args.no_text)
    if args.shard_of:
        _build_one_shard(rows, tokenizer, args)
    elif args.shards > 1:
        index = ShardedCorpusIndex.build(rows, tokenizer, args.out, args.shards, **options)
        print(f"{index.n_passages} passages, {index.n_tokens} tokens in {args.shards} shards")
    else:
        index = CorpusIndex.build(rows, tokenizer, args.out, **options)
        print(f"{index.n_passages} passages, {index.n_tokens} tokens")
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CorpusIndexError as err:
        sys.exit(f"error: {err}")
