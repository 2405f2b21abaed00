"""The embedded default, end to end: prepare the synthetic world and its indexes, train the tiny
GeMKR and its ablations, evaluate them and the baselines on the same test questions, and write the
results table (`<out>/results.md`). Every step is a resumable stage (mmrag.pipelines.stages) logged
in `<out>/stages.jsonl`; trainings and evaluations run as `train.py` / `eval.py` subprocesses, each
with its own log file beside its outputs.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from mmrag.common.errors import DataFormatError, MissingPathError
from mmrag.metrics.bootstrap import format_difference, paired_bootstrap
from mmrag.pipelines.prepare import default_input_stages
from mmrag.pipelines.stages import Stage, run_stages

REPO_ROOT = Path(__file__).resolve().parents[2]

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
QUICK_BUDGET = ["run.max_steps=40", "evaluation.max_samples=40"]
REFERENCE = RUNS[0][0]           # every other row is compared with the full model
DIFF_METRICS = ("P@5", "R@5")    # the headline metrics that get a paired bootstrap interval


def prepare_default_inputs(setting: str = "default", root: Path = REPO_ROOT, log_dir: Optional[Path] = None,
                           force: Sequence[str] = ()) -> List[str]:
    """Run the input-preparation stages of a setting (skipping those done); returns the stages that ran."""
    stages = default_input_stages(root, **SETTINGS[setting][0])
    return run_stages(stages, root, log_dir or root / "output" / setting, force=force)


def _folder(out: Path, root: Path) -> str:
    """`out` relative to root when under it (stage outputs are root-relative), else absolute."""
    try:
        return str(out.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(out.resolve())


def eval_folder(label: str) -> str:
    """'GeMKR, no region features' -> 'gemkr_no_region_features' (the evaluation's output folder)."""
    return label.split(" (")[0].replace(" ", "_").replace(",", "").lower()


def table_stages(setting: str, out: str, quick: bool = False, ablations: bool = True, prefix: Optional[str] = None,
                 overrides: Sequence[str] = ()) -> List[Tuple[Stage, Optional[str]]]:
    """(stage, table row label or None for a training) of the trainings and evaluations, in run order.
    `prefix`: the config files' prefix (default: the setting's); `overrides`: key=value for every run."""
    prefix, py = prefix or SETTINGS[setting][1], sys.executable
    budget = [*(QUICK_BUDGET if quick else []), *overrides]
    stages, trained = [], set()
    for label, train_variant, eval_variant in [r for r in RUNS if ablations or not r[1]]:
        if train_variant is not None and train_variant not in trained:
            trained.add(train_variant)
            run = f"gemkr{train_variant}"
            stages.append((Stage(f"train_{run}", [f"{out}/{run}/final/trainable.safetensors"],
                                 [py, "train.py", "--cfg-path", f"train_configs/{prefix}{train_variant}.yaml",
                                  f"run.output_dir={out}/{run}", "run.evaluate=false", "run.resume=auto", *budget],
                                 log_file=f"{out}/train_{run}.log"), None))
        folder = f"{out}/eval/{eval_folder(label)}"
        ckpt = [f"model.checkpoint={out}/gemkr{train_variant}/final"] if train_variant is not None else []
        stages.append((Stage(f"eval_{eval_folder(label)}", [f"{folder}/retrieval_summary.json"],
                             [py, "eval.py", "--cfg-path", f"eval_configs/{prefix}{eval_variant}.yaml",
                              f"run.output_dir={folder}", *ckpt, *budget], log_file=f"{folder}.log"), label))
    return stages


def results_table(rows) -> str:
    """One row per method from its summary, in the summary's headline case mode; when the summaries
    keep the gemkr mode beside it (`by_case_mode`), its P@5 / R@5 follow as two more columns."""
    side = "gemkr" if any(s.get("case_mode") != "gemkr" and "gemkr" in s.get("by_case_mode", {}) for _, s in rows) else None
    extra = f" P@5 ({side} mode) | R@5 ({side} mode) |" if side else ""
    lines = ["| method | P@5 | R@5 | R@10 | MRR@10 | clues in corpus |" + extra, "|---|---|---|---|---|---|" + "---|" * (2 * bool(side))]
    for label, s in rows:
        clues = f"{100 * s['clues_in_corpus']:.0f}%" if "clues_in_corpus" in s else "-"
        line = (f"| {label} | {100 * s['P@5']:.1f} | {100 * s['R@5']:.1f} | {100 * s['R@10']:.1f} | "
                f"{100 * s['MRR@10']:.1f} | {clues} |")
        if side:
            mode = s.get("by_case_mode", {}).get(side)
            line += f" {100 * mode['P@5']:.1f} | {100 * mode['R@5']:.1f} |" if mode else " - | - |"
        lines.append(line)
    return "\n".join(lines)


def read_per_query(summary_path: Path) -> List[Dict]:
    """The per-query records written beside an evaluation's summary (retrieval_per_query.json)."""
    path = Path(summary_path).with_name("retrieval_per_query.json")
    if not path.is_file():
        raise MissingPathError(f"{path}: per-query results of the evaluation are missing (re-run its stage)")
    return json.loads(path.read_text())


def paired_values(reference: Sequence[Dict], other: Sequence[Dict], metric: str, where: str) -> Tuple[List[float], List[float]]:
    """`metric` of the same questions in both evaluations, in the reference's order."""
    by_id = {r["query_id"]: r for r in other}
    ids = [r["query_id"] for r in reference]
    if len(by_id) != len(other) or set(ids) != set(by_id) or len(ids) != len(set(ids)):
        raise DataFormatError(f"{where}: the evaluations did not score the same questions "
                              f"({len(ids)} vs {len(other)} queries); evaluate both on one question set")
    return [float(r[metric]) for r in reference], [float(by_id[i][metric]) for i in ids]


def differences(per_query: Dict[str, List[Dict]], reference: str = REFERENCE,
                metrics: Sequence[str] = DIFF_METRICS) -> List[Tuple[str, Dict[str, Dict]]]:
    """(label, {metric: paired_bootstrap(reference, label)}) for every other method, in table order."""
    out = []
    for label, records in per_query.items():
        if label == reference:
            continue
        out.append((label, {m: paired_bootstrap(*paired_values(per_query[reference], records, m, f"{reference} vs {label}"))
                            for m in metrics}))
    return out


def differences_table(diffs: Sequence[Tuple[str, Dict[str, Dict]]], reference: str = REFERENCE) -> str:
    """Markdown: the reference minus each method, with its 95% paired bootstrap interval (points)."""
    metrics = list(diffs[0][1]) if diffs else list(DIFF_METRICS)
    lines = [f"| {reference} minus | " + " | ".join(f"{m} [95% CI]" for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for label, result in diffs:
        lines.append(f"| {label} | " + " | ".join(format_difference(result[m]) for m in metrics) + " |")
    return "\n".join(lines)


def in_case_mode(records: Sequence[Dict], mode: str) -> List[Dict]:
    """The per-query records as scored in `mode` (kept under `by_case_mode` beside the headline)."""
    return [{"query_id": r["query_id"], **r["by_case_mode"][mode]} for r in records]


def write_results(rows: Sequence[Tuple[str, Path]], out: Path) -> str:
    """The results table and the differences tables (headline case mode, and the gemkr mode when the
    evaluations kept it beside another headline) from the evaluations' files; writes results.md and
    differences.json in `out`; returns the markdown."""
    summaries = [(label, json.loads(Path(path).read_text())) for label, path in rows]
    per_query = {label: read_per_query(path) for label, path in rows}
    mode = summaries[0][1].get("case_mode", "gemkr")
    text = f"Relevance: {mode} case mode (headline).\n\n" + results_table(summaries)
    if REFERENCE in per_query and len(per_query) > 1:
        modes = {mode: per_query}
        if mode != "gemkr" and all("gemkr" in r.get("by_case_mode", {}) for recs in per_query.values() for r in recs):
            modes["gemkr"] = {label: in_case_mode(recs, "gemkr") for label, recs in per_query.items()}
        found = {m: differences(recs) for m, recs in modes.items()}
        for m, diffs in found.items():
            text += (f"\n\nDifferences in points ({m} case mode), 95% paired bootstrap over the same test questions "
                     "(10,000 resamples; 'within noise' when the interval holds 0):\n\n" + differences_table(diffs))
        (out / "differences.json").write_text(json.dumps({"reference": REFERENCE, "headline_case_mode": mode,
                                                          "by_case_mode": {m: dict(d) for m, d in found.items()}}, indent=1))
    (out / "results.md").write_text(text + "\n")
    return text


def rescore_evaluations(eval_dir: Path, corpus_csv: Path, out: Path) -> str:
    """Re-score the saved rankings of a finished run in every case mode (case-insensitive headline)
    without re-running a model, write them under `out` and return the tables of `write_results`.
    For runs made before the task kept `by_case_mode`; their saved flags must equal those of the mode
    they were scored in (`case_mode` of their summary; gemkr when absent)."""
    from mmrag.datasets.formats import read_corpus_csv
    from mmrag.metrics.retrieval import CASE_MODES, RetrievalQuery, evaluate_retrieval

    corpus, out = dict(read_corpus_csv(corpus_csv)), Path(out)
    rows = []
    for label, _, _ in RUNS:
        src = Path(eval_dir) / eval_folder(label)
        saved = read_per_query(src / "retrieval_summary.json")
        queries = [RetrievalQuery(r["query_id"], r["retrieved"], [corpus[i] for i in r["retrieved"]], r["answers"])
                   for r in saved]
        records, summary = evaluate_retrieval(queries, (1, 5, 10), "case_insensitive", report_modes=CASE_MODES)
        old = json.loads((src / "retrieval_summary.json").read_text())
        saved_mode = old.get("case_mode", "gemkr")  # the mode the saved flags were computed in
        if any(r["by_case_mode"][saved_mode]["relevant"] != s["relevant"] for r, s in zip(records, saved)):
            raise DataFormatError(f"{src}: saved relevance flags differ from the {saved_mode} mode's; "
                                  f"is {corpus_csv} its corpus?")
        summary.update({k: old[k] for k in ("clues_in_corpus",) if k in old})
        (out / eval_folder(label)).mkdir(parents=True, exist_ok=True)
        (out / eval_folder(label) / "retrieval_summary.json").write_text(json.dumps(summary, indent=1))
        (out / eval_folder(label) / "retrieval_per_query.json").write_text(json.dumps(records, indent=1))
        rows.append((label, out / eval_folder(label) / "retrieval_summary.json"))
    return write_results(rows, out)


def run_default(setting: str = "default", out: Optional[Path] = None, quick: bool = False, ablations: bool = True,
                force: Sequence[str] = (), root: Path = REPO_ROOT) -> str:
    """Prepare, train, evaluate and write `<out>/results.md`; returns the table."""
    out = Path(out) if out else root / "output" / setting
    out = out if out.is_absolute() else root / out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    pairs = table_stages(setting, _folder(out, root), quick, ablations)
    run_stages([*default_input_stages(root, **SETTINGS[setting][0]), *(s for s, _ in pairs)], root, out, force=force)
    table = write_results([(label, root / stage.outputs[0]) for stage, label in pairs if label], out)
    print(table)
    _record_time(out, time.time() - t0, setting, quick)
    print(f"\n{time.time() - t0:.0f} s in all; per-query results, summaries and recall@k plots under {out}")
    return table


def _record_time(out: Path, seconds: float, setting: str, quick: bool) -> None:
    timing = out / "timing.json"  # a resumed invocation records its own time beside the earlier ones
    runs: List[Dict] = json.loads(timing.read_text()) if timing.is_file() else []
    runs.append({"seconds": round(seconds, 1), "setting": setting, "quick": quick})
    timing.write_text(json.dumps(runs, indent=1))
