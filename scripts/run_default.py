"""The embedded default, end to end on a fresh machine (after `pip install -r requirements.txt`):
prepare the synthetic world and its indexes, train the tiny GeMKR and its ablations, evaluate them
and the baselines on the same test questions, and print the results table.

    python scripts/run_default.py [--quick] [--setting large]

`--quick` trains fewer steps and evaluates fewer questions (a smoke run, minutes less);
`--setting large` runs the same table on the `large` world with bigger tiny models (a GPU machine).
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = {  # inputs to prepare, and the prefix of the experiment configs
    "default": ({"world": "world_small", "preset": "small", "tower": "tiny",
                 "cfg_path": "train_configs/gemkr_tiny_world.yaml"}, "gemkr_tiny_world"),
    "large": ({"world": "world_large", "preset": "large", "tower": "large",
               "cfg_path": "train_configs/gemkr_large_world.yaml", "workers": 16}, "gemkr_large_world"),
}
# (row label, training variant or None for a baseline without one, evaluation variant): variant ""
# is the main model; the files are train_configs/<prefix><variant>.yaml and eval_configs/<prefix><variant>.yaml
RUNS = [
    ("GeMKR (constrained)", "", ""),
    ("GeMKR, no constraint", "", "_unconstrained"),
    ("GeMKR, no region features", "_noregion", "_noregion"),
    ("GeMKR, no prefix", "_noprefix", "_noprefix"),
    ("BM25 (question + caption)", None, "_bm25"),
    ("Dense dual encoder", None, "_dense"),
]


def _python(args, log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, stdout=f, stderr=subprocess.STDOUT)


def main(argv=None) -> None:
    from mmrag.common.default_setup import ensure_default_inputs

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--setting", choices=sorted(SETTINGS), default="default")
    p.add_argument("--no-ablations", action="store_true", help="skip the trained ablations (no regions / no prefix)")
    p.add_argument("--out", default=None, help="default: output/<setting>")
    args = p.parse_args(argv)
    setting, prefix = SETTINGS[args.setting]
    out = ROOT / (args.out or f"output/{args.setting}")
    out.mkdir(parents=True, exist_ok=True)
    budget = ["run.max_steps=40", "evaluation.max_samples=40"] if args.quick else []
    t0 = time.time()
    ensure_default_inputs(**setting)
    trained = {}
    rows = []
    runs = [r for r in RUNS if not (args.no_ablations and r[1])]
    for label, train_variant, eval_variant in runs:
        if train_variant is not None and train_variant not in trained:
            trained[train_variant] = train_once(f"train_configs/{prefix}{train_variant}.yaml", out,
                                                f"gemkr{train_variant}", budget, t0)
        folder = out / "eval" / label.split(" (")[0].replace(" ", "_").replace(",", "").lower()
        ckpt = [f"model.checkpoint={trained[train_variant] / 'final'}"] if train_variant is not None else []
        print(f"[{time.time() - t0:6.0f}s] evaluate: {label}", flush=True)
        if not (folder / "retrieval_summary.json").is_file():  # resumable: a finished evaluation is kept
            _python(["eval.py", "--cfg-path", f"eval_configs/{prefix}{eval_variant}.yaml", f"run.output_dir={folder}",
                     *ckpt, *budget], folder.with_suffix(".log"))
        rows.append((label, json.loads((folder / "retrieval_summary.json").read_text())))
    table = results_table(rows)
    (out / "results.md").write_text(table + "\n")
    print(table)
    timing = out / "timing.json"  # a resumed invocation records its own time beside the earlier ones
    runs_so_far = json.loads(timing.read_text()) if timing.is_file() else []
    runs_so_far.append({"seconds": round(time.time() - t0, 1), "setting": args.setting, "quick": args.quick})
    timing.write_text(json.dumps(runs_so_far, indent=1))
    print(f"\n{time.time() - t0:.0f} s in all; per-query results, summaries and recall@k plots under {out}")


def train_once(train_cfg: str, out: Path, run: str, overrides, t0: float) -> Path:
    """Train one variant unless its final weights exist (resumable); returns its output folder."""
    folder = out / run
    if not (folder / "final" / "trainable.safetensors").is_file():
        print(f"[{time.time() - t0:6.0f}s] train {run} -> {folder}", flush=True)
        _python(["train.py", "--cfg-path", train_cfg, f"run.output_dir={folder}", "run.evaluate=false",
                 "run.resume=auto", *overrides], out / f"train_{run}.log")
    return folder


def results_table(rows) -> str:
    lines = ["| method | P@5 | R@5 | R@10 | MRR@10 | clues in corpus |", "|---|---|---|---|---|---|"]
    for label, s in rows:
        clues = f"{100 * s['clues_in_corpus']:.0f}%" if "clues_in_corpus" in s else "-"
        lines.append(f"| {label} | {100 * s['P@5']:.1f} | {100 * s['R@5']:.1f} | {100 * s['R@10']:.1f} | "
                     f"{100 * s['MRR@10']:.1f} | {clues} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
