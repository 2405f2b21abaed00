"""The `shuffled` image control against a perfect seer given the same images.

Under `evaluation.image_control=shuffled` every POPE question is asked about another evaluated
question's image (vqa_eval's `control_images`: a seeded cyclic permutation of the split's distinct
images). The question keeps its own label, so even a model that sees perfectly is not expected to
score 50%: a "no" question asks about an object absent from its own image, and the substituted
image may hold it (popular / adversarial negatives are frequent objects, so often it does); a "yes"
object of one image is often absent from another.

The perfect seer answers "yes" iff the SHOWN image holds the asked object, by the world's boxes
(instances_*.json). Per split this module rebuilds the shown images exactly as the evaluation chose
them (and checks them against the `images` the answers file recorded), then gives:

  perfect_seer          the seer's POPE metrics against the questions' own labels
  shown_holds           per gold label, the share of questions whose shown image holds the object
  model_shuffled        the model's POPE metrics under shuffle, and how its answers follow the shown
                        image's truth (against_truth: agreement, yes-rate where it holds / lacks the object)
  model_minus_seer      the model's accuracy minus the seer's, over the same questions, with its 95%
                        paired bootstrap interval (is the model as far from 50% as the seer would be?)
  model_none            (when given) the same against the truth with its own image shown
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from mmrag.common.errors import DataFormatError
from mmrag.metrics.bootstrap import format_difference, paired_bootstrap
from mmrag.metrics.pope import answer_to_label, pope_metrics
from mmrag.pipelines.analysis import object_name

Row = Mapping[str, Any]


def shown_images(questions: Sequence[Row], image_root: str, seed: int) -> List[str]:
    """The image path each POPE row {image} was shown under `shuffled`, as vqa_eval's evaluate_split
    computes it: `image_root/<image>` of the split's evaluated rows, in order, through control_images."""
    from mmrag.tasks.vqa_eval import control_images

    paths = [str(Path(image_root) / q["image"]) for q in questions]
    # "shuffled" never writes to the folder (only "blank" does)
    return [str(p) for p in control_images(paths, "shuffled", seed, Path(image_root))]


def holds(objects: Mapping[str, frozenset], image: str, question: Row) -> bool:
    """Does `image` (a path; its file name is looked up in `objects`) hold the object the POPE row asks about?"""
    name = object_name(question["text"])
    if name is None:
        raise DataFormatError(f"question {question.get('question_id')}: {question['text']!r} is not a POPE question")
    file = Path(image).name
    if file not in objects:
        raise DataFormatError(f"image {file!r} (question {question.get('question_id')}): not in the annotations "
                              "(instances_*.json of the world the questions were built from)")
    return name in objects[file]


def check_labels(questions: Sequence[Row], objects: Mapping[str, frozenset]) -> None:
    """Raise unless the annotations reproduce every label: "yes" iff the row's own image holds the object."""
    wrong = [q for q in questions if ("yes" if holds(objects, q["image"], q) else "no") != q["label"]]
    if wrong:
        q = wrong[0]
        raise DataFormatError(f"{len(wrong)} of {len(questions)} POPE labels disagree with the annotations, e.g. "
                              f"question {q.get('question_id')} ({q['image']}: {q['text']!r} labelled {q['label']})")


def evaluated_rows(questions: Sequence[Row], answers: Sequence[Row]) -> List[Row]:
    """The POPE rows an answers file (vqa_eval's answers_<split>.jsonl) answered: its rows must be the
    first len(answers) questions, same order (evaluation.max_samples keeps a prefix)."""
    if len(answers) > len(questions):
        raise DataFormatError(f"answers file: {len(answers)} rows for {len(questions)} questions")
    for q, a in zip(questions, answers):
        if (a["question_id"], a["image"], a["question"], a["answer"]) != (q["question_id"], q["image"], q["text"], q["label"]):
            raise DataFormatError(f"answers file: row of question {a['question_id']} is not question "
                                  f"{q['question_id']} of the question file (another file or order)")
    return list(questions[: len(answers)])


def check_recorded_images(rows: Sequence[Row], shown: Sequence[str], answers: Sequence[Row]) -> bool:
    """Raise unless every answers row that recorded its `images` showed exactly the rebuilt one; True
    when all rows recorded them (vqa_eval writes them), False when none could be checked."""
    for q, path, a in zip(rows, shown, answers):
        if "images" in a and [path] != list(a["images"]):
            raise DataFormatError(f"question {q['question_id']}: the evaluation showed {a['images']}, the rebuilt "
                                  f"shuffle {path!r} (another seed, image_root or question order)")
    return all("images" in a for a in answers)


def _share(flags: Sequence[bool]) -> Optional[float]:
    return sum(flags) / len(flags) if flags else None


def against_truth(said: Sequence[str], truth: Sequence[str]) -> Dict[str, Optional[float]]:
    """How yes/no answers follow the truth of the image shown: the share that equal it, and the share
    of "yes" where the image holds the object / where it lacks it (the two sides, apart from how many
    of each the split has)."""
    return {"agreement": _share([s == t for s, t in zip(said, truth)]),
            "yes_where_holds": _share([s == "yes" for s, t in zip(said, truth) if t == "yes"]),
            "yes_where_lacks": _share([s == "yes" for s, t in zip(said, truth) if t == "no"])}


def shuffled_oracle(questions: Sequence[Row], objects: Mapping[str, frozenset], image_root: str, seed: int,
                    shuffled_answers: Sequence[Row], none_answers: Optional[Sequence[Row]] = None) -> Dict[str, Any]:
    """One split (see the module doc). `questions`: the split's POPE rows {question_id, image, text, label};
    `objects`: image file name -> object names (analysis.image_objects); `image_root`, `seed`: the
    shuffled run's evaluation.image_root and evaluation.seed; the answers: vqa_eval's rows."""
    rows = evaluated_rows(questions, shuffled_answers)
    check_labels(rows, objects)
    shown = shown_images(rows, image_root, seed)
    checked = check_recorded_images(rows, shown, shuffled_answers)
    truth = ["yes" if holds(objects, path, q) else "no" for q, path in zip(rows, shown)]
    labels = [q["label"] for q in rows]
    said = [answer_to_label(a["prediction"]) for a in shuffled_answers]
    seer = pope_metrics(truth, labels)
    result: Dict[str, Any] = {
        "questions": len(rows),
        "recorded_images_checked": checked,
        "perfect_seer": {k: seer[k] for k in ("accuracy", "f1", "yes_ratio")},
        "shown_holds": {g: _share([t == "yes" for t, lab in zip(truth, labels) if lab == g]) for g in ("yes", "no")},
        "model_shuffled": {
            **{k: v for k, v in pope_metrics([a["prediction"] for a in shuffled_answers], labels).items()
               if k in ("accuracy", "f1", "yes_ratio")},
            **against_truth(said, truth),
        },
        "model_minus_seer": paired_bootstrap([float(s == lab) for s, lab in zip(said, labels)],
                                             [float(t == lab) for t, lab in zip(truth, labels)]),
        "model_none": None,
    }
    if none_answers is not None:
        own = evaluated_rows(questions, none_answers)
        result["model_none"] = against_truth([answer_to_label(a["prediction"]) for a in none_answers],
                                             [q["label"] for q in own])
    return result


def shuffled_oracle_table(by_split: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """Markdown rows of `shuffled_oracle` per split, percentages."""
    def pct(value: Optional[float]) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    def follows(cell: Optional[Mapping[str, Optional[float]]]) -> str:
        if not cell:
            return "-"
        return f"{pct(cell['agreement'])} ({pct(cell['yes_where_holds'])} / {pct(cell['yes_where_lacks'])})"

    lines = ["| split | questions | perfect seer: accuracy / yes-ratio | shown image holds the object, % of "
             "\"yes\" / \"no\" questions | model: accuracy / yes-ratio | model agrees with the shown image "
             "(yes where it holds / lacks the object) | model minus seer, accuracy points | with its own image: "
             "agrees with the truth (yes where it holds / lacks) |", "|---|---|---|---|---|---|---|---|"]
    for split, r in by_split.items():
        seer, model, held = r["perfect_seer"], r["model_shuffled"], r["shown_holds"]
        lines.append(f"| {split} | {r['questions']} | {pct(seer['accuracy'])} / {pct(seer['yes_ratio'])} | "
                     f"{pct(held['yes'])} / {pct(held['no'])} | {pct(model['accuracy'])} / {pct(model['yes_ratio'])} | "
                     f"{follows(model)} | {format_difference(r['model_minus_seer'])} | {follows(r['model_none'])} |")
    return lines


# ----------------------------------------------------------------------------- from the files of a run
def world_objects(world: Path) -> Dict[str, frozenset]:
    """image file name -> object names of every annotated image of `world` (training and test boxes:
    the test POPE files ask about test images, pope_val/ about held-out training images); {} without them."""
    import json

    from mmrag.pipelines.analysis import image_objects

    objects: Dict[str, frozenset] = {}
    for part in ("train", "test"):
        path = Path(world) / "annotations" / f"instances_{part}.json"
        if path.is_file():
            objects.update(image_objects(json.loads(path.read_text())))
    return objects


def shuffled_oracle_by_split(root: Path, objects: Mapping[str, frozenset], question_file: str, image_root: str,
                             seed: int, shuffled: Path, none: Optional[Path], splits: Sequence[str]) -> Dict[str, Any]:
    """`shuffled_oracle` for every split with answers_<split>.jsonl in the `shuffled` folder; `question_file`
    ("{split}" replaced) and `image_root` as the evaluation config wrote them, relative to `root`; the
    `none` folder's answers of the same split when present."""
    from mmrag.common.jsonl import read_jsonl
    from mmrag.datasets.formats import read_pope_jsonl

    out: Dict[str, Any] = {}
    for split in splits:
        answers = Path(shuffled) / f"answers_{split}.jsonl"
        if not answers.is_file():
            continue
        own = Path(none) / f"answers_{split}.jsonl" if none else None
        out[split] = shuffled_oracle(read_pope_jsonl(Path(root) / question_file.format(split=split)), objects,
                                     image_root, seed, read_jsonl(answers),
                                     read_jsonl(own) if own and own.is_file() else None)
    return out
