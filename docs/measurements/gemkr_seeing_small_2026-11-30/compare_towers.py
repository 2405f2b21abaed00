"""GeMKR (constrained) on the world-trained CLIP tower minus GeMKR on the random tiny CLIP tower, same
model, budget and 200 test questions: 95% paired bootstrap per metric (mmrag.pipelines.default.differences),
in both case modes. Run from the repository root after
    mmrag-run-gemkr-seeing --prefix gemkr_seeing_small --out output/gemkr_seeing_small
    python scripts/run_default.py --out output/default      (its eval_gemkr stage is enough)"""
import json
from pathlib import Path

from mmrag.pipelines.default import differences, differences_table, in_case_mode

seeing = json.loads(Path("output/gemkr_seeing_small/eval/gemkr/retrieval_per_query.json").read_text())
random_tower = json.loads(Path("output/default/eval/gemkr/retrieval_per_query.json").read_text())
for mode in ("case_insensitive", "gemkr"):
    recs = {"GeMKR, world CLIP tower": in_case_mode(seeing, mode), "GeMKR, random tiny CLIP tower": in_case_mode(random_tower, mode)}
    diffs = differences(recs, reference="GeMKR, world CLIP tower", metrics=("P@5", "R@5", "R@10"))
    print(f"{mode} case mode\n" + differences_table(diffs, reference="GeMKR, world CLIP tower") + "\n")
