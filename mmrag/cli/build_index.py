"""Build the suffix-array corpus index used by constrained generative retrieval (GeMKR).

    python data_process/build_index.py --corpus dataset/okvqa/okvqa_train_corpus.csv \
        --tokenizer assets/llama_tokenizer --out index/okvqa_gs112k [--shards 4] [--workers 2]

The corpus is a CSV with header `id,text` (or `kid,text`). With --shards N the passages are split
into N contiguous chunks, one index per chunk under OUT/shard_XXX plus OUT/shards.json; with
--shard-of K/N only chunk K is built (run one per node; then --write-manifest N once).
Every flag is also a config key (shard_of=0/2, store_text=false, ...).
"""
from __future__ import annotations

from typing import Optional, Sequence

from mmrag.cli._args import tool_config, tool_parser
from mmrag.common.cli import exit_on_user_error

FLAGS = {a: a for a in ("corpus", "tokenizer", "out", "shards", "shard_of", "write_manifest", "workers", "batch_size",
                        "store_text")}


def main(argv: Optional[Sequence[str]] = None) -> int:
    from mmrag.pipelines.prepare import build_corpus_index

    parser = tool_parser(__doc__)
    parser.add_argument("--corpus", help="CSV with header id,text (or kid,text)")
    parser.add_argument("--tokenizer", help="folder of the LLM's HF tokenizer")
    parser.add_argument("--out", help="output folder, e.g. index/okvqa_gs112k")
    parser.add_argument("--shards", type=int, help="split the corpus into this many shards")
    parser.add_argument("--shard-of", help="K/N: build only shard K of N (0-based), for one node")
    parser.add_argument("--write-manifest", type=int, metavar="N", help="only write OUT/shards.json for N shards")
    parser.add_argument("--workers", type=int, help="tokeniser processes")
    parser.add_argument("--batch-size", type=int, help="passages per tokeniser batch")
    parser.add_argument("--no-text", action="store_const", const=False, dest="store_text",
                        help="do not store passage texts (decode tokens instead)")
    with exit_on_user_error():
        print(build_corpus_index(tool_config("build_index", parser, argv, FLAGS)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
