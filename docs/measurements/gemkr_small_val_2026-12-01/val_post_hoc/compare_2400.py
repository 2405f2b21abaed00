"""Post hoc (outside the rule): the 2,400-step val model against 1,200 steps and the dense encoder, same
422 val questions. From the root: PYTHONPATH=. python docs/measurements/gemkr_small_val_2026-12-01/val_post_hoc/compare_2400.py"""
import json
from pathlib import Path

from mmrag.metrics.bootstrap import format_difference
from mmrag.pipelines.default import differences, read_per_query

EVAL = Path("output/gemkr_small_val/eval")
recs = {m: read_per_query(EVAL / m / "retrieval_summary.json") for m in ("gemkr_steps2400", "gemkr_steps1200", "dense_dual_encoder")}
diffs = dict(differences(recs, reference="gemkr_steps2400"))
here = Path(__file__).resolve().parent
(here / "compare_2400.json").write_text(json.dumps({"summary_2400": json.loads((EVAL / "gemkr_steps2400/retrieval_summary.json").read_text()),
                                                    "differences": diffs}, indent=1))
for other, d in diffs.items():
    print(f"2400 steps minus {other}: P@5 {format_difference(d['P@5'])}  R@5 {format_difference(d['R@5'])}")
