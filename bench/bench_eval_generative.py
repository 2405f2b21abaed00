"""End-to-end GeMKR evaluation through `eval.py` at the LLaMA-7B shape (random weights): wall time and queries/s.

    python -m bench.bench_eval_generative                          # GPU: 5,046 queries, 7B shape, batch 64
    python -m bench.bench_eval_generative --toy                    # CPU: tiny LLM, 24 queries, seconds

The real OKVQA-GS112K data is not needed: the small synthetic world's test questions (dataset/world_small,
its corpus index and region features; prepared by `mmrag.pipelines.default.prepare_default_inputs` when
missing, timed apart as `prepare_s`) are cycled to `--queries` questions (question ids made unique) in a
temporary split file. `eval.py --cfg-path eval_configs/gemkr_tiny_world.yaml` then runs with the LLM
replaced by a random-weight LLaMA-7B shape in bf16, no checkpoint, GeMKR's decoding (10 beams, 10 groups,
clues of 2-10 tokens) and `--batch-size` questions a batch, once per `--backends` entry
(evaluation.constraint_backend). `wall_s` is eval.py's whole run (start-up, model build, corpus index
load, prompt building, decoding, scoring, writing); `retrieval_s` is the task's own timer around
`retrieve` (prompt building, image tower, decoding, clue scoring).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from bench.common import BenchError, emit

REPO = Path(__file__).resolve().parents[1]
CFG = "eval_configs/gemkr_tiny_world.yaml"
LLAMA_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "max_position_embeddings": 2048}
TOY_LLM = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 4, "max_position_embeddings": 512}
INPUTS = ("dataset/world_small/knowledge/test.json", "index/world_small/corpus/header.json",
          "index/tiny_clip_vision", "index/world_small/regions")


def prepare_inputs() -> Optional[float]:
    """Seconds spent building the small world's tower, corpus index and region features (None when they
    exist). The world itself (dataset/world_small) and assets/llama_tokenizer must be there already."""
    if all((REPO / p).exists() for p in INPUTS):
        return None
    from mmrag.pipelines.default import SETTINGS
    from mmrag.pipelines.prepare import default_input_stages
    from mmrag.pipelines.stages import run_stages

    needed = [INPUTS[0], "dataset/world_small/corpus.csv", "assets/llama_tokenizer"]
    missing = [p for p in needed if not (REPO / p).exists()]
    if missing:
        raise BenchError(f"{missing[0]}: missing; this bench needs the small world and the LLaMA tokenizer asset")
    start = time.perf_counter()
    stages = default_input_stages(REPO, **SETTINGS["default"][0])
    run_stages(stages, REPO, REPO / "output" / "bench_eval_generative", only=["tower", "corpus_index", "regions"])
    return round(time.perf_counter() - start, 1)


def cycled_questions(n: int, out: Path) -> Path:
    """The world's test questions repeated to n, each with a unique question id; returns the {split} path."""
    questions = json.loads((REPO / INPUTS[0]).read_text())
    rows = [{**questions[i % len(questions)], "question_id": f"{questions[i % len(questions)].get('question_id', i)}"
             f"_r{i // len(questions)}"} for i in range(n)]
    (out / "perf.json").write_text(json.dumps(rows))
    return out / "{split}.json"


def eval_overrides(args, data_path: Path, out_dir: Path, backend: str) -> List[str]:
    llm = TOY_LLM if args.toy else LLAMA_7B
    return ([f"model.llm.config.{k}={v}" for k, v in llm.items()] +
            ["model.checkpoint=null", f"model.llm.dtype={args.dtype}",
             f"datasets.gemkr_knowledge.data_path={data_path}", "evaluation.split=perf", "evaluation.max_samples=null",
             f"evaluation.batch_size={args.batch_size}", f"evaluation.num_beams={args.beams}",
             f"evaluation.num_beam_groups={args.beams}", f"evaluation.num_return_sequences={args.beams}",
             f"evaluation.constraint_backend={backend}", f"run.output_dir={out_dir}"] +
            (["run.device=cpu"] if args.toy else []))


def run_eval(args, data_path: Path, out_dir: Path, backend: str) -> Dict[str, Any]:
    cmd = [sys.executable, "eval.py", "--cfg-path", CFG, *eval_overrides(args, data_path, out_dir, backend)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-1500:]
        return {"backend": backend, "error": f"eval.py exited {proc.returncode}", "log_tail": tail}
    summary = json.loads((out_dir / "retrieval_summary.json").read_text())
    return {"backend": backend, "wall_s": round(wall, 1), "queries": summary["n_queries"],
            "queries_per_s_end_to_end": round(summary["n_queries"] / wall, 2),
            "retrieval_s": summary["seconds"], "retrieval_queries_per_s": summary["queries_per_s"],
            "clues_in_corpus": summary.get("clues_in_corpus"), "R@5": summary.get("R@5"),
            # eval.py's own phases (build_model_s: a random 7B LLaMA is initialised on the host here, which
            # a run that loads trained weights does not pay; evaluate_s holds index load, prompts, decoding)
            "phases": phase_seconds(out_dir, wall)}


def phase_seconds(out_dir: Path, wall: float) -> Optional[Dict[str, float]]:
    """eval.py's timings.json plus `outside_s`: interpreter start-up, imports and config (wall minus phases)."""
    path = out_dir / "timings.json"
    if not path.is_file():
        return None
    phases = json.loads(path.read_text())
    return {**phases, "outside_s": round(wall - sum(phases.values()), 1)}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="tiny LLM on the CPU, 24 queries")
    ap.add_argument("--queries", type=int, default=None, help="questions (default 5046, toy 24)")
    ap.add_argument("--batch-size", type=int, default=None, help="questions a batch (default 64, toy 8)")
    ap.add_argument("--beams", type=int, default=10)
    ap.add_argument("--backends", default="auto", help="comma list of constraint backends: auto, host, device")
    ap.add_argument("--dtype", default=None, help="LLM dtype (default bfloat16, toy float32)")
    args = ap.parse_args(argv)
    for key, full, toy in (("queries", 5046, 24), ("batch_size", 64, 8), ("dtype", "bfloat16", "float32")):
        if getattr(args, key) is None:
            setattr(args, key, toy if args.toy else full)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not args.backends or any(b not in ("auto", "host", "device") for b in args.backends):
        raise BenchError(f"--backends: expected a comma list of auto, host, device, got {args.backends}")
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    prepare_s = prepare_inputs()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        data_path = cycled_questions(args.queries, Path(tmp))
        for backend in args.backends:
            runs.append(run_eval(args, data_path, Path(tmp) / f"eval_{backend}", backend))
            print(f"{backend}: {runs[-1]}", flush=True)
    result = {"bench": "eval_generative", "toy": args.toy, "config": CFG, "llm": TOY_LLM if args.toy else LLAMA_7B,
              "dtype": args.dtype, "batch_size": args.batch_size, "beams": args.beams, "queries": args.queries,
              "prepare_s": prepare_s, "runs": runs}
    emit(result)
    return result


if __name__ == "__main__":
    main()
