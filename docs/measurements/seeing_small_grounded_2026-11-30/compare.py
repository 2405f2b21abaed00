"""Paired 95% bootstrap of variant minus baseline on val pope_val/all (and each variant's shuffled gain)."""
import json, sys
from pathlib import Path
from mmrag.metrics.bootstrap import paired_bootstrap, format_difference
from mmrag.pipelines.analysis import correct_by_question

root = Path(sys.argv[1]); base = sys.argv[2]; variants = sys.argv[3:]
def cbq(name, control):
    return correct_by_question(root / name / control / "answers_all.jsonl")
rows = {}
for name in [base] + variants:
    res = json.load(open(root / name / "none" / "results.json"))["all"]
    sh = json.load(open(root / name / "shuffled" / "results.json"))["all"]
    seen, blind = cbq(name, "none"), cbq(name, "shuffled"); ids = sorted(seen)
    gain = paired_bootstrap([seen[i] for i in ids], [blind[i] for i in ids])
    row = {"acc": round(100 * res["accuracy"], 1), "yes": round(100 * res["yes_ratio"], 1), "f1": round(100 * res["f1"], 1),
           "shuffled_acc": round(100 * sh["accuracy"], 1), "shuffled_yes": round(100 * sh["yes_ratio"], 1),
           "gain_over_shuffled": format_difference(gain)}
    if name != base:
        b = cbq(base, "none")
        row["minus_baseline"] = format_difference(paired_bootstrap([seen[i] for i in ids], [b[i] for i in ids]))
    rows[name] = row
    print(name, json.dumps(row))
json.dump(rows, open(root / "compare.json", "w"), indent=1)
