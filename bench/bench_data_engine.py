"""Benchmark the DataEngine generation path on a world: the world-oracle generator's items/s (alone,
and with the scene-graph oracle check), in one process and in `--workers` processes, the reply
parser's replies/s, and Adaptive Bad-case Sampling's planned requests/s (scene-graph neighbours).

    python -m bench.bench_data_engine                       # dataset/world_small, 20,000 items
    python -m bench.bench_data_engine --toy                 # a tiny world made in a temporary folder

Prints one JSON line at the end (the issue's target: oracle >= 1,000 items/s on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Tuple

from bench.common import emit
from mmrag.datasets.world import typed_benchmark as tb
from mmrag.pipelines import data_engine as engine
from mmrag.pipelines import data_engine_generators as gens

REPLIES = ["Question: How many creatures are in the image?\nChoices: A. one B. two C. three D. four\nAnswer: B\n"
           "Explanation: two creatures.", "", "Sure, here you go.", "Question: Is there a cup?\nChoices: A. yes B. no "
           "C. maybe D. cannot tell\nAnswer: A and B", "Question: What is at [0.1, 0.2]?\nChoices: A. a B. b C. c D. d\nAnswer: A"]


def _world(args) -> Path:
    if not args.toy:
        return Path(args.world)
    from mmrag.datasets.world import generate_world

    out = Path(tempfile.mkdtemp(prefix="bench_de_")) / "world_tiny"
    generate_world("tiny", 0, out, progress=False)
    return out


def _requests(graphs: List[tb.SceneGraph], n: int, seed: int) -> List[gens.Request]:
    rng = random.Random(seed)
    return [gens.Request(rng.choice(tb.QTYPES), rng.choice(graphs), [], f"b{i}", rng.randrange(2 ** 31)) for i in range(n)]


def _work(job: Tuple[str, int, int, bool]) -> Tuple[int, int, float]:
    """(items kept, items checked ok, seconds) of n requests on one process (loading not timed)."""
    world, n, seed, check = job
    graphs = tb.load_scene_graphs(Path(world), ("train",))["train"]
    generator = gens.OracleGenerator(tb.entity_names_by_category(graphs))
    requests = _requests(graphs, n, seed)
    start = time.perf_counter()
    out = generator.generate(requests)
    if check:
        out = gens.oracle_checked(out, requests)
    seconds = time.perf_counter() - start
    kept = sum(g.item is not None for g in out)
    return kept, sum(g.reason == "kept" for g in out), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default="dataset/world_small")
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--toy", action="store_true", help="a tiny world in a temporary folder, 2,000 items")
    ap.add_argument("--llm", default=None, help="also time the LLM generator with this local HF model folder")
    ap.add_argument("--llm-items", type=int, default=12, help="requests sent to the LLM generator (one batch)")
    ap.add_argument("--llm-max-tokens", type=int, default=96)
    args = ap.parse_args()
    world = _world(args)
    n = 2000 if args.toy else args.items
    result: Dict[str, Any] = {"world": str(world), "items": n, "cpu_count": os.cpu_count(), "workers": args.workers}
    kept, _, seconds = _work((str(world), n, 0, False))
    result["oracle_items_per_s"] = round(kept / seconds, 1)
    kept, ok, seconds = _work((str(world), n, 0, True))
    result["oracle_checked_items_per_s"] = round(ok / seconds, 1)
    result["oracle_check_pass_rate"] = round(ok / max(1, kept), 4)
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [(str(world), n // args.workers, 1 + w, True) for w in range(args.workers)]
        start = time.perf_counter()
        parts = list(pool.map(_work, jobs))
        wall = time.perf_counter() - start   # includes each worker's world loading: a lower bound
    result["oracle_checked_items_per_s_workers"] = round(sum(p[1] for p in parts) / max(p[2] for p in parts), 1)
    result["oracle_checked_wall_items_per_s_workers_incl_loading"] = round(sum(p[1] for p in parts) / wall, 1)
    start = time.perf_counter()
    reps = 2000 if args.toy else 20000
    for i in range(reps):
        gens.parse_reply(REPLIES[i % len(REPLIES)])
    result["parser_replies_per_s"] = round(reps / (time.perf_counter() - start), 1)
    graphs = tb.load_scene_graphs(world, ("train",))["train"]
    bad = {t: [{"id": f"v{t}{i}", "image": g.image, "qtype": t, "subtype": None} for i, g in enumerate(graphs[:20])]
           for t in tb.QTYPES}
    cfg = {"max_boxes": 10, "budget": min(n, 2000), "in_context": 2, "neighbour_fraction": 0.5, "neighbours": {"k": 8}}
    neighbours = engine.SceneNeighbours(graphs, graphs, world)
    start = time.perf_counter()
    plan = engine.plan_requests({t: 0.5 for t in tb.QTYPES}, bad, graphs, neighbours, engine.ARMS["targeted"], cfg, 0,
                                "b", world)
    result["abs_plan_requests_per_s"] = round(len(plan) / (time.perf_counter() - start), 1)
    if args.llm:
        result["llm"] = _llm(args, graphs)
    emit(result)


def _llm(args, graphs: List[tb.SceneGraph]) -> Dict[str, Any]:
    """Items/s and acceptance (parsed and oracle-checked) of the LLM generator, one type per request in turn."""
    from collections import Counter

    from mmrag.models.text_generator import build_chat_backend

    backend = build_chat_backend({"type": "local", "path": args.llm, "batch_size": args.llm_items})
    generator = gens.LLMGenerator(backend, gens.TypeDefinitions.load(tb.QTYPES), gens.load_prompt("system"),
                                  max_tokens=args.llm_max_tokens)
    rng = random.Random(0)
    requests = [gens.Request(tb.QTYPES[i % len(tb.QTYPES)], rng.choice(graphs), [], f"l{i}", i)
                for i in range(args.llm_items)]
    start = time.perf_counter()
    out = gens.oracle_checked(generator.generate(requests), requests)
    seconds = time.perf_counter() - start
    reasons = Counter(g.reason for g in out)
    return {"model": args.llm, "requests": len(out), "seconds": round(seconds, 2),
            "requests_per_s": round(len(out) / seconds, 3), "kept": reasons["kept"],
            "acceptance_rate": round(reasons["kept"] / len(out), 3), "reasons": dict(reasons),
            "max_tokens": args.llm_max_tokens, "example_reply": out[0].reply}


if __name__ == "__main__":
    main()
