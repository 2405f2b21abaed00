"""POPE scoring, the official way, with "yes" as the positive class.

Answer -> yes/no (as in the POPE paper's evaluator): keep the first sentence (text before the first
'.'), drop commas, split into words; the answer is "no" when the words contain "No", "not" or "no"
(whole words, case as written), otherwise "yes". Consequences, all on purpose:

- "No, there is not."  -> no   ("No" is a word)
- "I don't know"       -> yes  (no whole word "no"/"not"; SURf's substring test wrongly said no)
- "Yes."               -> yes
- "NO"                 -> yes  (the official word list is case-sensitive; kept for comparable numbers)
- "" (empty answer)    -> yes  (the official rule has no "no" word to find). Empty answers are also
                          counted in `num_empty` so a model that says nothing is visible in the report.

We split on any whitespace where the official code splits on single spaces; the two differ only for
answers holding newlines or tabs in the first sentence.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

from mmrag.common.jsonl import read_jsonl as _read_jsonl
from mmrag.common.errors import DataFormatError

NEGATIVE_WORDS = ("No", "not", "no")
SPLITS = ("random", "popular", "adversarial")


class PopeFileError(DataFormatError):
    """A malformed POPE question or answer file: names the file and the line."""


def answer_to_label(answer: str) -> str:
    """Map a free-form answer to "yes" or "no" by the official POPE rule (see module doc)."""
    first_sentence = answer.split(".")[0]
    words = first_sentence.replace(",", "").split()
    return "no" if any(w in NEGATIVE_WORDS for w in words) else "yes"


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def pope_metrics(answers: Sequence[str], labels: Sequence[str]) -> Dict[str, float]:
    """Accuracy, precision, recall, F1 (yes = positive) and yes-ratio of answers against yes/no labels."""
    if len(answers) != len(labels):
        raise ValueError(f"pope_metrics: {len(answers)} answers for {len(labels)} labels")
    bad = [lab for lab in labels if lab not in ("yes", "no")]
    if bad:
        raise ValueError(f"pope_metrics: labels must be 'yes' or 'no', got {bad[0]!r}")
    preds = [answer_to_label(a) for a in answers]
    tp = sum(p == "yes" and t == "yes" for p, t in zip(preds, labels))
    fp = sum(p == "yes" and t == "no" for p, t in zip(preds, labels))
    tn = sum(p == "no" and t == "no" for p, t in zip(preds, labels))
    fn = sum(p == "no" and t == "yes" for p, t in zip(preds, labels))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "accuracy": _ratio(tp + tn, len(labels)),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "yes_ratio": _ratio(tp + fp, len(labels)),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "num": len(labels),
        "num_empty": sum(not a.strip() for a in answers),
    }


def read_jsonl(path: str | Path) -> List[dict]:
    return _read_jsonl(path, PopeFileError)


def score_split(questions_file: str | Path, answers_file: str | Path, answer_key: str = "text") -> Dict[str, float]:
    """Score one split: POPE questions ({question_id, label}) joined with answers ({question_id, <answer_key>})."""
    questions = read_jsonl(questions_file)
    answers = {}
    for n, row in enumerate(read_jsonl(answers_file), start=1):
        if "question_id" not in row or answer_key not in row:
            raise PopeFileError(f"{answers_file}: row {n} needs 'question_id' and '{answer_key}'")
        answers[row["question_id"]] = str(row[answer_key])
    missing = [q["question_id"] for q in questions if q["question_id"] not in answers]
    if missing:
        raise PopeFileError(f"{answers_file}: no answer for question_id {missing[0]!r} of {questions_file} ({len(missing)} missing)")
    return pope_metrics([answers[q["question_id"]] for q in questions], [q["label"] for q in questions])


def write_report(results: Mapping[str, Mapping[str, float]], out_dir: str | Path, title: str = "POPE") -> Dict[str, Path]:
    """Write `pope_results.json` and `pope_results.png` (accuracy / F1 / yes-ratio per split) into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "pope_results.json"
    json_path.write_text(json.dumps(dict(results), indent=2))
    png_path = out_dir / "pope_results.png"
    plot_results(results, png_path, title)
    return {"json": json_path, "png": png_path}


def plot_results(results: Mapping[str, Mapping[str, float]], path: Path, title: str) -> None:
    """Grouped bars: one group per split, bars for accuracy, F1 and yes-ratio (in %)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on the training machines
    import matplotlib.pyplot as plt

    splits, metrics = list(results), ("accuracy", "f1", "yes_ratio")
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(splits), 3.2))
    for m, name in enumerate(metrics):
        xs = [s + (m - (len(metrics) - 1) / 2) * width for s in range(len(splits))]
        ax.bar(xs, [100 * results[s][name] for s in splits], width, label=name)
    ax.set_xticks(range(len(splits)), splits)
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
