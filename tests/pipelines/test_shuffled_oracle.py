"""The shuffled control against a perfect seer: a hand-built world of 4 images whose expected shares are
worked out by hand from the shown images written below, and the rebuilt shuffle checked against the
images vqa_eval's own evaluation handed to the answerer."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from mmrag.common.config import last_saved_config
from mmrag.common.errors import DataFormatError
from mmrag.common.jsonl import read_jsonl
from mmrag.common.registry import SCORERS
from mmrag.pipelines import seeing
from mmrag.pipelines.shuffled_oracle import (shown_images, shuffled_oracle, shuffled_oracle_by_split,
                                             shuffled_oracle_table)
from mmrag.tasks.vqa_eval import RequestBuilder, VqaEvalTask, evaluate_split

OBJECTS = {"a.jpg": frozenset({"cat", "dog"}), "b.jpg": frozenset({"dog"}), "c.jpg": frozenset({"bird"}),
           "d.jpg": frozenset({"cat", "bird"})}
# vqa_eval's shuffle of the sorted paths img/a..d with seed 1 (a 4-cycle; seed 0 gives a->c, b->a, c->d, d->b)
SHOWN_SEED_1 = {"a.jpg": "b.jpg", "b.jpg": "c.jpg", "c.jpg": "d.jpg", "d.jpg": "a.jpg"}
# (image, object, label): the label is whether the question's OWN image holds the object
QUESTIONS = [("a.jpg", "cat", "yes"), ("a.jpg", "bird", "no"), ("a.jpg", "dog", "yes"),
             ("b.jpg", "dog", "yes"), ("b.jpg", "bird", "no"),
             ("c.jpg", "bird", "yes"), ("c.jpg", "cat", "no"),
             ("d.jpg", "cat", "yes"), ("d.jpg", "dog", "no")]
# shown image:   b      b      b      c      c      d      d      a      a
# holds it?      no     no     yes    no     yes    yes    yes    yes    yes   -> the perfect seer's answers
# right?         no     yes    yes    no     no     yes    no     yes    no    -> 4 of 9; it says yes 6 of 9
SHUFFLED_SAID = ["Yes.", "No.", "no", "No, there is not.", "No.", "Yes", "No.", "Yes.", "Yes."]  # POPE rule: y n n n n y n y y
NONE_SAID = ["Yes.", "Yes.", "Yes.", "Yes.", "No.", "No.", "No.", "Yes.", "No."]  # own image shown


def pope_rows():
    return [{"question_id": n, "image": image, "text": f"Is there a {name} in the image?", "label": label}
            for n, (image, name, label) in enumerate(QUESTIONS, start=1)]


def answer_rows(said, shown=None):
    """vqa_eval's answers rows; `shown`: own image -> the image recorded as shown (None: own image)."""
    return [{"question_id": q["question_id"], "image": q["image"], "question": q["text"], "answer": q["label"],
             "prediction": p, "images": [f"img/{(shown or {}).get(q['image'], q['image'])}"]}
            for q, p in zip(pope_rows(), said)]


def test_perfect_seer_and_model_agreement_worked_out_by_hand():
    r = shuffled_oracle(pope_rows(), OBJECTS, "img", 1, answer_rows(SHUFFLED_SAID, SHOWN_SEED_1), answer_rows(NONE_SAID))
    assert r["questions"] == 9 and r["recorded_images_checked"]
    assert r["perfect_seer"]["accuracy"] == pytest.approx(4 / 9)
    assert r["perfect_seer"]["yes_ratio"] == pytest.approx(6 / 9)
    # the shown image holds the object on rows 3, 6, 8 of the 5 "yes" rows, on rows 5, 7, 9 of the 4 "no" rows
    assert r["shown_holds"] == pytest.approx({"yes": 3 / 5, "no": 3 / 4})
    model = r["model_shuffled"]
    # against the labels: right on rows 1, 2, 5, 6, 7, 8 -> 6/9, says yes on rows 1, 6, 8, 9 -> 4/9
    assert model["accuracy"] == pytest.approx(6 / 9) and model["yes_ratio"] == pytest.approx(4 / 9)
    # against the shown image: equal on rows 2, 4, 6, 8, 9 -> 5/9; yes on 3 (6, 8, 9) of the 6 rows whose
    # shown image holds it, on 1 (row 1) of the 3 that lack it
    assert model["agreement"] == pytest.approx(5 / 9)
    assert model["yes_where_holds"] == pytest.approx(3 / 6) and model["yes_where_lacks"] == pytest.approx(1 / 3)
    # right on rows 1, 2, 5, 6, 7, 8 against the seer's 2, 3, 6, 8: 2/9 above it
    gap = r["model_minus_seer"]
    assert gap["diff"] == pytest.approx(2 / 9) and gap["n"] == 9 and gap["low"] <= 2 / 9 <= gap["high"]
    # own image: wrong on rows 2 and 6 -> 7/9; yes on 4 of the 5 "yes" rows, on 1 of the 4 "no" rows
    assert r["model_none"] == pytest.approx({"agreement": 7 / 9, "yes_where_holds": 4 / 5, "yes_where_lacks": 1 / 4})
    table = "\n".join(shuffled_oracle_table({"random": r}))
    assert "| random | 9 | 44.4 / 66.7 | 60.0 / 75.0 | 66.7 / 44.4 | 55.6 (50.0 / 33.3) | +22.2 [" in table
    assert table.endswith("| 77.8 (80.0 / 25.0) |")


def test_another_seed_than_the_recorded_images_is_refused():
    with pytest.raises(DataFormatError, match="showed"):
        shuffled_oracle(pope_rows(), OBJECTS, "img", 0, answer_rows(SHUFFLED_SAID, SHOWN_SEED_1))


def test_annotations_that_do_not_reproduce_the_labels_are_refused():
    wrong = {**OBJECTS, "d.jpg": frozenset({"bird"})}   # d's "cat" question is labelled yes
    with pytest.raises(DataFormatError, match="1 of 9 POPE labels"):
        shuffled_oracle(pope_rows(), wrong, "img", 1, answer_rows(SHUFFLED_SAID, SHOWN_SEED_1))


def test_answers_of_other_questions_are_refused():
    answers = answer_rows(SHUFFLED_SAID, SHOWN_SEED_1)
    answers[0], answers[1] = answers[1], answers[0]
    with pytest.raises(DataFormatError, match="not question"):
        shuffled_oracle(pope_rows(), OBJECTS, "img", 1, answers)


class RecordingAnswerer:
    """Says "Yes." to everything and keeps the images each request showed."""

    def __init__(self):
        self.shown = []

    def answer(self, requests):
        self.shown += [r["images"] for r in requests]
        return ["Yes."] * len(requests)


@pytest.mark.parametrize("seed, max_samples", [(0, None), (1, None), (5, 7)])
def test_rebuilt_shuffle_is_the_one_vqa_eval_showed(tmp_path, seed, max_samples):
    (tmp_path / "pope").mkdir()
    (tmp_path / "pope" / "random.jsonl").write_text("".join(json.dumps(q) + "\n" for q in pope_rows()))
    ev = OmegaConf.create({**VqaEvalTask.DEFAULTS["evaluation"], "question_file": f"{tmp_path}/pope/{{split}}.jsonl",
                           "image_root": f"{tmp_path}/img", "image_control": "shuffled", "seed": seed,
                           "max_samples": max_samples})
    answerer = RecordingAnswerer()
    evaluate_split("random", ev, RequestBuilder(ev.retrieval), answerer, SCORERS.get("pope")(), tmp_path / "out")
    evaluated = pope_rows()[: max_samples or None]
    assert [[p] for p in shown_images(evaluated, f"{tmp_path}/img", seed)] == answerer.shown
    assert all(s != [f"{tmp_path}/img/{q['image']}"] for q, s in zip(evaluated, answerer.shown))  # never its own
    # the answers file it wrote passes the recorded-image check
    result = shuffled_oracle_by_split(tmp_path, OBJECTS, ev.question_file, ev.image_root, seed, tmp_path / "out", None,
                                      ["random", "popular"])
    assert list(result) == ["random"] and result["random"]["recorded_images_checked"]
    assert result["random"]["questions"] == len(evaluated) and result["random"]["model_none"] is None
    assert len(read_jsonl(tmp_path / "out" / "answers_random.jsonl")) == len(evaluated)


def test_seeing_reads_the_last_saved_config_and_skips_without_one(tmp_path):
    folder = tmp_path / "out" / "pope_shuffled"
    assert last_saved_config(folder) is None
    assert seeing.shuffled_oracle_splits(tmp_path, tmp_path / "world", tmp_path / "out", ["random"]) == {}
    folder.mkdir(parents=True)
    for name in ("config.yaml", "config.2.yaml", "config.10.yaml", "config_old.yaml"):
        (folder / name).write_text("evaluation: {}\n")
    assert last_saved_config(folder).name == "config.10.yaml"
