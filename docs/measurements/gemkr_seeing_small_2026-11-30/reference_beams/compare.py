"""GeMKR at the reference's decoding (10 beams in 10 groups, 10 clues) against the configs' 5/5, on the
already trained checkpoints and the same 200 test questions. Tables and paired 95% bootstrap differences
come from the pipeline's own code (mmrag.pipelines.default: results_table, differences, in_case_mode).
Run from the repository root after run_evals.sh (and run_default_evals.sh for the default table's model):
    python docs/measurements/gemkr_seeing_small_2026-11-30/reference_beams/compare.py > .../compare.txt
It also writes compare.json beside itself."""
import json
from pathlib import Path

from mmrag.pipelines.default import differences, differences_table, in_case_mode, read_per_query, results_table

HERE = Path(__file__).resolve().parent
MODES = ("case_insensitive", "gemkr")
METRICS = ("P@5", "R@5", "R@10")
SETTINGS = {  # name: (folder of the 5/5 run, folder of the 10/10 run, [(row label, eval folder)])
    "seeing_small": ("output/gemkr_seeing_small", "output/gemkr_seeing_small_beams10",
                     [("GeMKR (constrained)", "gemkr"), ("GeMKR, no constraint", "gemkr_no_constraint"),
                      ("GeMKR, no region features", "gemkr_no_region_features"), ("GeMKR, no prefix", "gemkr_no_prefix")]),
    "default": ("output/default", "output/default_beams10",
                [("GeMKR (constrained)", "gemkr"), ("GeMKR, no constraint", "gemkr_no_constraint")]),
}
BASELINES = [("BM25 (question + caption)", "bm25"), ("Dense dual encoder", "dense_dual_encoder")]


def summary(folder):
    path = Path(folder) / "retrieval_summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def by_mode(records, mode):
    return in_case_mode(records, mode)


def hits_per_hit_question(records):
    """Mean answer-bearing passages in the top 5 over the questions with at least one (headline mode):
    high when a model's clues pile onto the passages of the questions it gets, leaving others empty."""
    counts = [sum(r["relevant"][:5]) for r in records]
    hit = [c for c in counts if c]
    return sum(hit) / max(1, len(hit))


def same_rankings(a, b):
    ids = {r["query_id"]: r["retrieved"] for r in b}
    return sum(ids.get(r["query_id"]) == r["retrieved"] for r in a), len(a)


def compare_setting(name, old, new, rows):
    out, text = {"setting": name}, [f"### {name}: 5/5 folder {old}, 10/10 folder {new}\n"]
    table_rows, per_query = [], {}
    for label, folder in rows:
        for tag, root in (("5/5", old), ("10/10", new)):
            s = summary(f"{root}/eval/{folder}")
            if s is not None:
                table_rows.append((f"{label}, {tag}", s))
                per_query[f"{label}, {tag}"] = read_per_query(Path(f"{root}/eval/{folder}/retrieval_summary.json"))
    for label, folder in BASELINES:  # baselines do not decode: their existing run (or a rerun in the new folder)
        for root in (old, new):
            s = summary(f"{root}/eval/{folder}")
            if s is not None:
                table_rows.append((label, s))
                per_query[label] = read_per_query(Path(f"{root}/eval/{folder}/retrieval_summary.json"))
                break
    text.append(results_table(table_rows))
    out["summaries"] = {label: {k: s[k] for k in ("P@5", "R@5", "R@10", "MRR@10", "seconds", "queries_per_s")
                                if k in s} | {"by_case_mode": s.get("by_case_mode"),
                                              "clues_in_corpus": s.get("clues_in_corpus")} for label, s in table_rows}
    out["hits_per_hit_question"] = {label: round(hits_per_hit_question(r), 3) for label, r in per_query.items()}
    rerun = f"{new}/eval/gemkr_beams5_rerun"
    if summary(rerun) is not None:
        same, n = same_rankings(read_per_query(Path(f"{old}/eval/gemkr/retrieval_summary.json")),
                                read_per_query(Path(f"{rerun}/retrieval_summary.json")))
        out["rerun_5_5_same_top10"] = [same, n]
        text.append(f"\nReproduction: the 5/5 rerun of the full model ranks the same top 10 as the original 5/5 run "
                    f"for {same} of {n} questions.")
    out["differences"] = {}
    for mode in MODES:
        recs = {label: by_mode(r, mode) for label, r in per_query.items()}
        blocks = {}
        ref = "GeMKR (constrained), 10/10"
        if ref in recs:
            sub = {k: v for k, v in recs.items() if not k.endswith("5/5")}
            blocks[ref] = differences(sub, reference=ref, metrics=METRICS)
        for label, _ in rows:  # 10/10 minus 5/5 of the same model
            a, b = f"{label}, 10/10", f"{label}, 5/5"
            if a in recs and b in recs:
                blocks.setdefault("each model at 10/10", []).extend(
                    (f"{label} at 5/5", d) for _, d in differences({a: recs[a], b: recs[b]}, reference=a, metrics=METRICS))
        ref5 = "GeMKR (constrained), 5/5"
        if ref5 in recs:  # the 5/5 figures, recomputed the same way (they should equal RESULTS.md's)
            blocks[ref5] = differences({ref5: recs[ref5], **{k: v for k, v in recs.items() if k in dict(BASELINES)}},
                                       reference=ref5, metrics=METRICS)
        for ref_name, diffs in blocks.items():
            text.append(f"\n{mode} case mode\n\n" + differences_table(diffs, reference=ref_name))
        out["differences"][mode] = {ref_name: dict(diffs) for ref_name, diffs in blocks.items()}
    text.append("\nAnswer-bearing passages in the top 5, mean over the questions with at least one (headline mode):\n\n"
                "| method | passages |\n|---|---|\n" + "\n".join(
                    f"| {k} | {v:.2f} |" for k, v in out["hits_per_hit_question"].items()))
    return out, "\n".join(text)


def main():
    results, texts = {}, []
    for name, (old, new, rows) in SETTINGS.items():
        if summary(f"{new}/eval/gemkr") is None:
            continue
        results[name], text = compare_setting(name, old, new, rows)
        stages = Path(new) / "stages.jsonl"
        if stages.is_file():
            results[name]["stages"] = [json.loads(line) for line in stages.read_text().splitlines() if line.strip()]
        if "stages" in results[name]:
            walls = {st["stage"]: st["wall_s"] for st in results[name]["stages"]}
            lines = ["| run | retrieval s (200 questions) | questions/s | eval.py wall s |", "|---|---|---|---|"]
            for folder in [f for _, f in rows] + ["gemkr_beams5_rerun", "dense_dual_encoder"]:
                s = summary(f"{new}/eval/{folder}")
                if s is not None:
                    tag = {"gemkr_beams5_rerun": " (5/5)", "dense_dual_encoder": ""}.get(folder, " (10/10)")
                    lines.append(f"| {folder}{tag} | {s['seconds']:.1f} | {s['queries_per_s']:.1f} | {walls.get(folder, '-')} |")
            text += "\n\nTiming (this machine, one process at a time, OMP_NUM_THREADS=1, nice 10):\n\n" + "\n".join(lines)
        texts.append(text)
    (HERE / "compare.json").write_text(json.dumps(results, indent=1))
    print("\n\n".join(texts))


if __name__ == "__main__":
    main()
