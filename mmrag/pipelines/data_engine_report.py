"""The DataEngine loop's report: the per-round table, the per-type accuracy plot across rounds, and
the targeted-vs-control differences with 95% paired bootstrap intervals.

Reads what the stages wrote (round eval metrics.json, round data counts.json) and writes
`<out>/report.json` and `<out>/report.png`. The weakest types are chosen on round 0's *val* error
rates; every accuracy in the table and every interval is on *test* questions, paired by question id.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from mmrag.common.jsonl import write_json
from mmrag.datasets.world import typed_benchmark as tb
from mmrag.metrics.bootstrap import format_difference, paired_bootstrap

SHORT = {"existence": "exist", "count": "count", "attribute": "attr", "spatial": "spatial", "identity": "ident",
         "knowledge": "know"}


def _load(path: Path) -> Optional[Dict[str, Any]]:
    return json.loads(path.read_text()) if path.is_file() else None


def collect(engine) -> Dict[str, Any]:
    """arm -> round -> {"val", "test", "counts"} for every round that has finished its evaluation."""
    base = _load(engine.round_dir(None, 0).eval / "metrics.json")
    runs: Dict[str, Any] = {}
    for arm in engine.cfg["arms"]:
        runs[arm] = {0: {**(base or {}), "counts": None}} if base else {}
        for r in range(1, engine.cfg["rounds"] + 1):
            metrics = _load(engine.round_dir(arm, r).eval / "metrics.json")
            if metrics:
                runs[arm][r] = {**metrics, "counts": _load(engine.round_dir(arm, r).data / "counts.json")}
    return runs


def weakest_types(base_val: Dict[str, Any], n: int = 2) -> List[str]:
    rates = {t: v["error_rate"] for t, v in base_val["by_qtype"].items()}
    return sorted(rates, key=lambda t: (-rates[t], t))[:n]


def _rejections(counts: Optional[Dict[str, Any]]) -> str:
    if not counts:
        return "-"
    top = sorted(counts["rejected_by_reason"].items(), key=lambda kv: -kv[1])[:3]
    return "; ".join(f"{reason} {n}" for reason, n in top) or "none"


def table(runs: Dict[str, Any], split: str = "test") -> str:
    head = ["arm", "round", f"{split} acc"] + [SHORT[t] for t in tb.QTYPES] + ["val err (weakest)", "requested", "kept",
                                                                               "rejected (top reasons)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, rounds in runs.items():
        for r, m in sorted(rounds.items()):
            if r == 0 and arm != next(iter(runs)):
                continue
            cells = [arm if r else "base", str(r), f"{100 * m[split]['accuracy']:.1f}"]
            cells += [f"{100 * m[split]['by_qtype'][t]['accuracy']:.1f}" if t in m[split]["by_qtype"] else "-" for t in tb.QTYPES]
            worst = weakest_types(m["val"], 2)
            cells.append(", ".join(f"{t} {100 * m['val']['by_qtype'][t]['error_rate']:.0f}" for t in worst))
            c = m["counts"]
            cells += [str(c["requests"]) if c else "-", str(c["kept"]) if c else "-", _rejections(c)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def differences(runs: Dict[str, Any], arm: str, control: str, r: int, types: Sequence[str]) -> Dict[str, Any]:
    """arm minus control at round r on the test questions of `types` (and all), paired by question id."""
    a, b = runs[arm][r]["test"]["correct"], runs[control][r]["test"]["correct"]
    qtype = {qid: t for t in tb.QTYPES for qid in _ids_of(runs, t)}
    out = {}
    for name, keep in [("weakest_two", set(types)), *[(t, {t}) for t in types], ("all", set(tb.QTYPES))]:
        ids = sorted(q for q in a if q in b and qtype.get(q) in keep)
        out[name] = paired_bootstrap([a[q] for q in ids], [b[q] for q in ids]) if ids else None
    return out


def _ids_of(runs: Dict[str, Any], qtype: str) -> List[str]:
    return [qid for qid in next(iter(runs.values()))[0]["test"]["correct"] if qid.endswith(f"_{qtype}")]


def plot(runs: Dict[str, Any], path: Path, title: str, split: str = "test") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(runs)
    fig, axes = plt.subplots(1, len(arms), figsize=(3.6 * len(arms), 3.2), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], arms):
        rounds = sorted(runs[arm])
        for t in tb.QTYPES:
            ax.plot(rounds, [100 * runs[arm][r][split]["by_qtype"].get(t, {"accuracy": float("nan")})["accuracy"]
                             for r in rounds], marker="o", label=t)
        ax.plot(rounds, [100 * runs[arm][r][split]["accuracy"] for r in rounds], "k--", label="overall")
        ax.set_title(arm)
        ax.set_xlabel("round")
        ax.set_xticks(rounds)
    axes[0][0].set_ylabel(f"{split} accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def report(engine) -> Dict[str, Any]:
    runs = collect(engine)
    if not any(runs.values()):
        return {"table": "(no finished round yet)", "runs": {}}
    last = engine.cfg["rounds"]
    base_val = next(iter(runs.values()))[0]["val"]
    weakest = weakest_types(base_val)
    text = [table(runs), "", f"Weakest two types at round 0 (val error rate): {', '.join(weakest)}"]
    diffs: Dict[str, Any] = {}
    if "targeted" in runs and last in runs["targeted"]:
        for control in [a for a in runs if a != "targeted" and last in runs[a]]:
            diffs[control] = differences(runs, "targeted", control, last, weakest)
            text.append(f"targeted - {control} at round {last} (test, points, 95% paired bootstrap): " + "; ".join(
                f"{name} {format_difference(d)}" for name, d in diffs[control].items() if d))
        gain = {}
        a, b = runs["targeted"][last]["test"]["correct"], runs["targeted"][0]["test"]["correct"]
        ids = sorted(set(a) & set(b))
        gain = paired_bootstrap([a[q] for q in ids], [b[q] for q in ids])
        diffs["targeted_vs_round0_all"] = gain
        text.append(f"targeted round {last} - round 0, all test questions: {format_difference(gain)}")
    out = Path(engine.out)
    plot(runs, out / "report.png", f"DataEngine per-type test accuracy ({engine.cfg['generator']['type']} generator)")
    slim = {arm: {r: {k: ({kk: vv for kk, vv in v.items() if kk != "correct"} if k in ("val", "test") else v)
                      for k, v in m.items()} for r, m in rounds.items()} for arm, rounds in runs.items()}
    result = {"table": "\n".join(text), "weakest": weakest, "differences": diffs, "runs": slim}
    write_json(out / "report.json", result)
    return result
