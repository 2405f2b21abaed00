"""Analyses behind the SURf report, computed from the data and the evaluation outputs.

The name-only rule answers a POPE question ("Is there a <name> in the image?") from the object's
NAME alone, never looking at the image, using training-split statistics only:

- for every name asked about in the training yes/no questions, count how often it was answered
  "yes" and "no"; the rule says "yes" iff yes(name) / (yes(name) + no(name)) >= 0.5 (a tie says yes);
- a name never asked about in training gets the overall majority answer of the training yes/no
  questions ("yes" iff the overall share of "yes" is >= 0.5).

Scored with the official POPE metric (mmrag.metrics.pope), it shows how far a model could get on a
split from the name prior alone; its agreement with a model's answers shows whether the model does.

Also here: false "yes" by how often the object was seen in training (false_yes_by_frequency), and
what vanilla RAG's retrieved neighbours hold (rag_neighbours, neighbour_presence): for each POPE
question, whether the training images retrieved into its prompt hold the asked object, per gold
answer, against the chance of k random training images.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from mmrag.common.errors import DataFormatError
from mmrag.common.jsonl import read_jsonl
from mmrag.metrics.bootstrap import format_difference, paired_bootstrap
from mmrag.metrics.pope import answer_to_label, pope_metrics

_QUESTION = re.compile(r"Is there (?:a|an) (.+?) in the image\?")


def object_name(question: str) -> Optional[str]:
    """'<image>\\nIs there a red ball in the image? Answer yes or no.' -> 'red ball' (None if not a POPE question)."""
    match = _QUESTION.search(question)
    return match.group(1).strip().lower() if match else None


def _gold(answer: str) -> Optional[str]:
    """'Yes.' / 'no' -> 'yes' / 'no'; anything else -> None (not a yes/no answer)."""
    word = answer.strip().rstrip(".").strip().lower()
    return word if word in ("yes", "no") else None


@dataclass
class NameOnlyRule:
    """The rule of the module doc, fitted on (name, gold yes/no) pairs of the training split."""

    counts: Dict[str, Counter] = field(default_factory=dict)
    overall: Counter = field(default_factory=Counter)

    @classmethod
    def fit(cls, conversations: Iterable[Mapping[str, Any]]) -> "NameOnlyRule":
        """Fit on LLaVA records: every human turn that is a POPE question followed by a yes/no answer."""
        rule = cls()
        for record in conversations:
            turns = record["conversations"]
            for question, answer in zip(turns[::2], turns[1::2]):
                name, gold = object_name(question["value"]), _gold(answer["value"])
                if name and gold:
                    rule.counts.setdefault(name, Counter())[gold] += 1
                    rule.overall[gold] += 1
        return rule

    def answer(self, question: str) -> str:
        name = object_name(question)
        seen = self.counts.get(name) if name else None
        yes, no = (seen["yes"], seen["no"]) if seen else (self.overall["yes"], self.overall["no"])
        return "yes" if yes >= no else "no"   # share of yes >= 0.5 (also when nothing was seen at all)


def name_only_scores(rule: NameOnlyRule, questions: Sequence[Mapping[str, Any]]) -> Dict[str, float]:
    """POPE metrics of the rule on POPE rows {text, label}."""
    return pope_metrics([rule.answer(q["text"]) for q in questions], [q["label"] for q in questions])


def agreement(rule: NameOnlyRule, questions: Sequence[Mapping[str, Any]], predictions: Sequence[str]) -> float:
    """Share of questions where the model's answer (POPE-mapped to yes/no) equals the rule's."""
    if len(questions) != len(predictions):
        raise ValueError(f"agreement: {len(predictions)} predictions for {len(questions)} questions")
    same = [rule.answer(q["text"]) == answer_to_label(p) for q, p in zip(questions, predictions)]
    return sum(same) / len(same) if same else 0.0


def name_only_table(rule: NameOnlyRule, questions_by_split: Mapping[str, Sequence[Mapping[str, Any]]],
                    predictions: Mapping[str, Mapping[str, Sequence[str]]]) -> List[str]:
    """Markdown rows: the rule's accuracy / F1 / yes-ratio per split, then its agreement with each model.

    `predictions`: row label -> split -> the model's answers to the same questions, in order.
    """
    splits = list(questions_by_split)
    lines = ["| | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    cells = []
    for split in splits:
        m = name_only_scores(rule, questions_by_split[split])
        cells.append(f"{100 * m['accuracy']:.1f} / {100 * m['f1']:.1f} / {100 * m['yes_ratio']:.1f}")
    lines.append("| name-only rule: accuracy / F1 / yes% | " + " | ".join(cells) + " |")
    for label, by_split in predictions.items():
        shares = [f"{100 * agreement(rule, questions_by_split[s], by_split[s]):.1f}" if s in by_split else "-"
                  for s in splits]
        lines.append(f"| agreement with {label}, % | " + " | ".join(shares) + " |")
    return lines


# ----------------------------------------------------------------------------- false "yes" by how often an object was seen
FREQUENCY_BINS = ((0, 0, "0"), (1, 9, "1-9"), (10, 49, "10-49"), (50, None, "50+"))


def training_image_counts(instances: Mapping[str, Any]) -> Dict[str, int]:
    """name (lower case) -> number of training images holding at least one box of it (COCO instances)."""
    names = {c["id"]: c["name"].lower() for c in instances["categories"]}
    images: Dict[str, set] = {}
    for box in instances["annotations"]:
        images.setdefault(names[box["category_id"]], set()).add(box["image_id"])
    return {name: len(ids) for name, ids in images.items()}


def false_yes_by_frequency(answers: Iterable[Mapping[str, Any]], counts: Mapping[str, int]) -> Dict[str, Dict[str, float]]:
    """Among the "no" questions of an answers file (vqa_eval's answers_<split>.jsonl rows: question,
    answer, prediction), how many the model answered "yes", binned by how many training images hold
    the asked object (FREQUENCY_BINS): {bin: {"false_yes", "questions", "rate"}}, bins in order."""
    table = {label: {"false_yes": 0, "questions": 0} for _, _, label in FREQUENCY_BINS}
    for row in answers:
        name = object_name(row["question"])
        if name is None or _gold(row["answer"]) != "no":
            continue
        seen = counts.get(name, 0)
        label = next(lab for lo, hi, lab in FREQUENCY_BINS if seen >= lo and (hi is None or seen <= hi))
        table[label]["questions"] += 1
        table[label]["false_yes"] += answer_to_label(row["prediction"]) == "yes"
    for cell in table.values():
        cell["rate"] = cell["false_yes"] / cell["questions"] if cell["questions"] else float("nan")
    return table


def correct_by_question(answers_file) -> Dict[Any, float]:
    """question_id -> 1.0 / 0.0 from the `correct` field of an evaluation's answers file (vqa_eval's
    answers_<split>.jsonl): what paired bootstrap intervals between two runs are computed over."""
    return {row["question_id"]: float(row["correct"]) for row in read_jsonl(answers_file)}


# ----------------------------------------------------------------------------- what the RAG neighbours hold
# For each POPE question: do the k training images that vanilla RAG puts before the question hold
# the asked object (by the COCO boxes of the training images)? Against the chance reference: k
# training images drawn at random without replacement. Per gold label: for a "no" question a
# neighbour holding the absent object can suggest "yes"; for a "yes" question, no neighbour holding
# it gives the model nothing to confirm it.
def image_objects(instances: Mapping[str, Any]) -> Dict[str, frozenset]:
    """image file name -> names (lower case) of the objects boxed in it (COCO instances); every image
    of the file is listed, one without boxes with no names."""
    names = {c["id"]: c["name"].lower() for c in instances["categories"]}
    held: Dict[int, set] = {img["id"]: set() for img in instances["images"]}
    for box in instances["annotations"]:
        held[box["image_id"]].add(names[box["category_id"]])
    return {img["file_name"].rsplit("/", 1)[-1]: frozenset(held[img["id"]]) for img in instances["images"]}


def rag_neighbours(questions: Sequence[Mapping[str, Any]], image_root, database, k: int,
                   threshold: Optional[float] = None, embedder: Optional[Mapping[str, Any]] = None,
                   retriever: Any = None) -> List[List[Dict[str, Any]]]:
    """The database items vanilla RAG puts into each POPE row's prompt ({question_id, image, text}),
    best first, as vqa_eval retrieves them: its RequestBuilder (image_database retriever, the query
    image `image_root/<image>`, exclude="self", the best `k` with score >= `threshold`). Each item is
    the database row's metadata {row, id, image, caption}. `retriever`: one already built (tests)."""
    from omegaconf import OmegaConf

    from mmrag.tasks.vqa_eval import RequestBuilder, VqaEvalTask

    cfg = OmegaConf.create({**VqaEvalTask.DEFAULTS["evaluation"]["retrieval"], "mode": "rag", "database": str(database),
                            "k": k, "threshold": threshold, "embedder": dict(embedder or {})})
    builder = RequestBuilder(cfg, retriever)
    index = builder.retriever.index
    requests = builder.build([q["text"] for q in questions], [str(Path(image_root) / q["image"]) for q in questions])
    return [[index.metadata[index.row_of_id[r["id"]]] for r in req["retrieved"]] for req in requests]


def _names_in(caption: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", caption.lower()) is not None


def neighbour_holds(question: Mapping[str, Any], found: Sequence[Mapping[str, Any]],
                    objects: Mapping[str, frozenset]) -> Optional[List[bool]]:
    """For each retrieved item of a POPE row {text, label}: does its image hold the asked object?
    None for a row without a parsable object name or a yes/no gold label. A neighbour image missing
    from `objects` raises DataFormatError (the database is not the annotated training images)."""
    name = object_name(question["text"])
    if name is None or _gold(question["label"]) is None:
        return None
    files = [str(item["image"]).rsplit("/", 1)[-1] for item in found]
    missing = [f for f in files if f not in objects]
    if missing:
        raise DataFormatError(f"retrieved image {missing[0]!r} (question {question.get('question_id')}): not an "
                              "image of the training annotations (instances_train.json); the database must be "
                              "built from the annotated training images")
    return [name in objects[f] for f in files]


def neighbour_presence(questions: Sequence[Mapping[str, Any]], neighbours: Sequence[Sequence[Mapping[str, Any]]],
                       objects: Mapping[str, frozenset], k: int) -> Dict[str, Dict[str, float]]:
    """Per gold label ("yes" / "no") of POPE rows {text, label} with their retrieved items (rag_neighbours):

    questions      the rows with a parsable object name
    any_holds      share of them where at least one neighbour's image holds the asked object
    mean_holds     mean over them of the share of their neighbours that hold it
    caption_names  share where at least one neighbour's caption names it (a whole-word match)
    base_rate      mean of the name's base rate: the share of the training images (`objects`) holding it
    chance_any     mean chance that at least one of `k` training images drawn at random (without
                   replacement) holds it: 1 - C(N - m, k) / C(N, k), N images of which m hold it
    (shares are None for a label without questions; neighbour_holds says which rows count)."""
    if len(questions) != len(neighbours):
        raise ValueError(f"neighbour_presence: {len(neighbours)} neighbour lists for {len(questions)} questions")
    total = len(objects)
    holding = Counter(name for names in objects.values() for name in names)
    sums = {label: Counter() for label in ("yes", "no")}
    for question, found in zip(questions, neighbours):
        holds = neighbour_holds(question, found, objects)
        if holds is None:
            continue
        name = object_name(question["text"])
        m, cell = holding[name], sums[_gold(question["label"])]
        miss = 1.0  # chance that none of k random images holds it
        for i in range(k):
            miss *= max(total - m - i, 0) / (total - i) if total > i else 0.0
        cell["questions"] += 1
        cell["any_holds"] += any(holds)
        cell["mean_holds"] += sum(holds) / len(holds) if holds else 0.0
        cell["caption_names"] += any(_names_in(item.get("caption", ""), name) for item in found)
        cell["base_rate"] += m / total if total else 0.0
        cell["chance_any"] += 1.0 - miss
    return {label: {"questions": cell["questions"],
                    **{key: cell[key] / cell["questions"] if cell["questions"] else None
                       for key in ("any_holds", "mean_holds", "caption_names", "base_rate", "chance_any")}}
            for label, cell in sums.items()}


def accuracy_by_neighbours(questions: Sequence[Mapping[str, Any]], neighbours: Sequence[Sequence[Mapping[str, Any]]],
                           objects: Mapping[str, frozenset], predictions: Mapping[str, Sequence[str]],
                           difference: Optional[tuple] = None) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """gold label -> "holds" (>= 1 neighbour holds the asked object) / "lacks" (none does) ->
    {"questions", "accuracy": {model: POPE accuracy of its answers there}, "difference": paired
    bootstrap of `difference` = (model a, model b) accuracy, a minus b, or None}. `predictions`: model
    -> its answers to `questions`, in order. Cells without questions have empty accuracies."""
    for model, answers in predictions.items():
        if len(answers) != len(questions):
            raise ValueError(f"accuracy_by_neighbours: {len(answers)} answers of {model!r} for {len(questions)} questions")
    right: Dict[tuple, Dict[str, List[float]]] = {}
    for n, (question, found) in enumerate(zip(questions, neighbours)):
        holds = neighbour_holds(question, found, objects)
        if holds is None:
            continue
        gold = _gold(question["label"])
        cell = right.setdefault((gold, "holds" if any(holds) else "lacks"), {m: [] for m in predictions})
        for model, answers in predictions.items():
            cell[model].append(float(answer_to_label(answers[n]) == gold))
    table: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for gold in ("yes", "no"):
        for kind in ("holds", "lacks"):
            cell = right.get((gold, kind), {})
            count = len(next(iter(cell.values()))) if cell else 0
            diff = None
            if difference and count and all(m in cell for m in difference):
                diff = paired_bootstrap(cell[difference[0]], cell[difference[1]])
            table.setdefault(gold, {})[kind] = {"questions": count, "difference": diff,
                                                "accuracy": {m: sum(v) / len(v) for m, v in cell.items() if v}}
    return table


def recorded_neighbours_agree(neighbours: Sequence[Sequence[Mapping[str, Any]]], questions: Sequence[Mapping[str, Any]],
                              answers: Iterable[Mapping[str, Any]]) -> tuple:
    """(questions whose recomputed neighbour ids equal, in order, the `retrieved` ids that a RAG
    evaluation recorded in its answers file, questions found in that file)."""
    recorded = {row["question_id"]: [r["id"] for r in row.get("retrieved", [])] for row in answers}
    pairs = [(recorded[q["question_id"]], [item["id"] for item in found])
             for q, found in zip(questions, neighbours) if q["question_id"] in recorded]
    return sum(a == b for a, b in pairs), len(pairs)


NEIGHBOUR_COLUMNS = ("any_holds", "mean_holds", "chance_any", "base_rate", "caption_names")   # table order


def neighbour_table(presence: Mapping[str, Mapping[str, Mapping[str, float]]], k: int) -> List[str]:
    """Markdown rows of `neighbour_presence` per split (split -> label -> cells), percentages."""
    lines = [f"| split, gold answer | questions | >= 1 of the {k} neighbours holds the object, % | neighbours "
             f"holding it, mean % | chance: >= 1 of {k} random training images holds it, % | base rate: training "
             f"images holding it, mean % | >= 1 neighbour's caption names it, % |", "|---|---|---|---|---|---|---|"]
    for split, by_label in presence.items():
        for label in ("yes", "no"):
            c = by_label[label]
            cells = [f"{100 * c[key]:.1f}" if c["questions"] else "-" for key in NEIGHBOUR_COLUMNS]
            lines.append(f"| {split}, {label} | {c['questions']} | " + " | ".join(cells) + " |")
    return lines


def neighbour_accuracy_table(by_split: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]],
                             models: Sequence[str], difference_label: Optional[str] = None) -> List[str]:
    """Markdown rows of `accuracy_by_neighbours` per split: accuracy of each of `models`, then the
    paired difference, for the questions where a neighbour holds the asked object and where none does."""
    head = ["split, gold answer, a neighbour holds the object", "questions", *(f"{m}, acc %" for m in models)]
    head += [f"{difference_label}, points"] if difference_label else []
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for split, table in by_split.items():
        for gold in ("yes", "no"):
            for kind in ("holds", "lacks"):
                c = table[gold][kind]
                cells = [f"{100 * c['accuracy'][m]:.1f}" if m in c["accuracy"] else "-" for m in models]
                if difference_label:
                    cells.append(format_difference(c["difference"]) if c["difference"] else "-")
                answer = "yes" if kind == "holds" else "no"
                lines.append(f"| {split}, {gold}, {answer} | {c['questions']} | " + " | ".join(cells) + " |")
    return lines
