"""Accuracy differences between the large seeing models on the POPE test splits, as an UNPAIRED 95%
bootstrap (each model's per-question correct vector resampled independently): the answer files of the
2026-11-30 (e) lease did not come back, only each split's accuracy and question count, so the pairing
over the same questions is not available. Unpaired intervals are wider than paired ones (conservative).
    PYTHONPATH=. python docs/measurements/h200x2_lease_2026-11-30e/unpaired.py
"""
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RUNS = {"224 px + match bias (large_grounded)": HERE / "seeing_matchbias/seeing_matchbias_report.json",
        "224 px": HERE / "seeing_final/seeing_final_report.json",
        "160 px (seeing_large_smollm2, lease b)": HERE.parent / "seeing_large_smollm2_2026-11-30b/report_test.json"}
PAIRS = [("224 px + match bias (large_grounded)", "224 px"),
         ("224 px + match bias (large_grounded)", "160 px (seeing_large_smollm2, lease b)"),
         ("224 px", "160 px (seeing_large_smollm2, lease b)")]


def correct_counts(path: Path) -> dict:
    results = json.loads(path.read_text())["results"]["none"]
    return {s: (round(r["accuracy"] * r["num"]), r["num"]) for s, r in results.items()}


def unpaired_interval(a: tuple, b: tuple, resamples: int = 10000, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    (ca, na), (cb, nb) = a, b
    diff = rng.binomial(na, ca / na, resamples) / na - rng.binomial(nb, cb / nb, resamples) / nb
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return 100 * (ca / na - cb / nb), 100 * lo, 100 * hi


def main() -> None:
    counts = {name: correct_counts(path) for name, path in RUNS.items() if path.is_file()}
    missing = [str(p) for n, p in RUNS.items() if n not in counts]
    if missing:
        sys.exit(f"missing report(s): {missing}")
    for a, b in PAIRS:
        cells = []
        for split in ("random", "popular", "adversarial"):
            d, lo, hi = unpaired_interval(counts[a][split], counts[b][split])
            cells.append(f"{split} {d:+.1f} [{lo:+.1f}, {hi:+.1f}]{' within noise' if lo <= 0 <= hi else ''}")
        print(f"{a} minus {b}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
