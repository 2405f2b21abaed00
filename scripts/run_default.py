"""The embedded default, end to end on a fresh machine (after `pip install -r requirements.txt`):
prepare the synthetic world and its indexes, train the tiny GeMKR and its ablations, evaluate them
and the baselines on the same test questions, and print the results table.

    python scripts/run_default.py [--quick]

`--quick` trains fewer steps and evaluates fewer questions (a smoke run, minutes less).
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAIN_CFG = "train_configs/gemkr_tiny_world.yaml"
# (row label, training run or None, overrides of training + evaluation, evaluation-only overrides)
RUNS = [
    ("GeMKR (constrained)", "gemkr", [], []),
    ("GeMKR, no constraint", "gemkr", [], ["evaluation.constrained=false", "evaluation.name=unconstrained"]),
    ("GeMKR, no region features", "gemkr_noregion", ["datasets.gemkr_knowledge.region_store=null"], []),
    ("GeMKR, no prefix", "gemkr_noprefix",
     ["model.region_prefix.enabled=false", "model.vision_tower.select_feature=cls",
      "datasets.gemkr_knowledge.region_store=null"], []),
    ("BM25 (question + caption)", None, [], ["evaluation.method=bm25"]),
    ("Dense dual encoder", None, [], ["evaluation.method=dense"]),
]


def _python(args, log: Path) -> None:
    with open(log, "w") as f:
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, stdout=f, stderr=subprocess.STDOUT)


def main(argv=None) -> None:
    from mmrag.common.default_setup import ensure_default_inputs

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="output/default")
    args = p.parse_args(argv)
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    budget = ["run.max_steps=40", "evaluation.max_samples=40"] if args.quick else []
    t0 = time.time()
    ensure_default_inputs()
    trained = {}
    rows = []
    for label, run, overrides, eval_only in RUNS:
        if run and run not in trained:
            folder = out / run
            print(f"[{time.time() - t0:6.0f}s] train {run} -> {folder}", flush=True)
            _python(["train.py", "--cfg-path", TRAIN_CFG, f"run.output_dir={folder}", "run.evaluate=false",
                     *overrides, *budget], out / f"train_{run}.log")
            trained[run] = folder
        folder = out / "eval" / label.split(" (")[0].replace(" ", "_").replace(",", "").lower()
        ckpt = [f"model.checkpoint={trained[run] / 'final'}"] if run else []
        print(f"[{time.time() - t0:6.0f}s] evaluate: {label}", flush=True)
        _python(["eval.py", "--cfg-path", TRAIN_CFG, f"run.output_dir={folder}", *ckpt, *overrides, *eval_only,
                 *budget], folder.with_suffix(".log"))
        rows.append((label, json.loads((folder / "retrieval_summary.json").read_text())))
    table = results_table(rows)
    (out / "results.md").write_text(table + "\n")
    print(table)
    print(f"\n{time.time() - t0:.0f} s in all; per-query results, summaries and recall@k plots under {out}")


def results_table(rows) -> str:
    lines = ["| method | P@5 | R@5 | R@10 | MRR@10 | clues in corpus |", "|---|---|---|---|---|---|"]
    for label, s in rows:
        clues = f"{100 * s['clues_in_corpus']:.0f}%" if "clues_in_corpus" in s else "-"
        lines.append(f"| {label} | {100 * s['P@5']:.1f} | {100 * s['R@5']:.1f} | {100 * s['R@10']:.1f} | "
                     f"{100 * s['MRR@10']:.1f} | {clues} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
