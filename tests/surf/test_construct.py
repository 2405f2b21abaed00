"""Data construction on hand-made records with a deterministic fake model: exactly the expected
positive/negative pairs come out, in LLaVA multi-image format."""
from __future__ import annotations

import random

import pytest

from mmrag.retrievers.base import Hit
from mmrag.surf import construct
from mmrag.surf.prompts import REANSWER_TEMPLATE
from mmrag.surf.tool_eval import TokenF1Scorer

SHORT = "\nAnswer the question using a single word or phrase."
MC = "\nA. cat\nB. dog\nC. bird\nAnswer with the option's letter from the given choices directly."
SAMPLES = [
    {"id": "s1", "image": "images/q1.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat colour is the car?" + SHORT}, {"from": "gpt", "value": "Red"},
        {"from": "human", "value": "How many wheels does it have?" + SHORT}, {"from": "gpt", "value": "4"}]},
    {"id": "s2", "image": "images/q2.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhich animal is shown?" + MC}, {"from": "gpt", "value": "B"}]},
    {"id": "s3", "image": "images/q3.jpg", "conversations": [
        {"from": "human", "value": "Describe the scene.\n<image>"},
        {"from": "gpt", "value": "A red car parked next to a tall green tree on a sunny street."}]},
    {"id": "s4", "conversations": [{"from": "human", "value": "Tell a joke."}, {"from": "gpt", "value": "No."}]},
]


def hit(name, score):
    return Hit(name, score, f"db/{name}.jpg", f"caption of {name}")


HITS = {
    "images/q1.jpg": [hit("r1", 0.9), hit("r2", 0.8), hit("r3", 0.7)],
    "images/q2.jpg": [hit("r4", 0.95), hit("r5", 0.6), hit("r6", 0.5)],
    "images/q3.jpg": [hit("r1", 0.85), hit("r7", 0.8), hit("r3", 0.4)],
}
INITIAL = {"What colour": "Blue", "How many": "4", "Which animal": "A", "Describe": "A car."}
# (retrieved image, question start) -> re-answer; comments give the label it earns
REANSWERS = {
    ("db/r1.jpg", "What colour"): "Blue.",                 # 0
    ("db/r2.jpg", "What colour"): "It is red.",            # 1 (whole-word substring)
    ("db/r3.jpg", "What colour"): "red",                   # 1, but less similar than r2
    ("db/r1.jpg", "How many"): "4",                        # 1  -> all positive: question dropped
    ("db/r2.jpg", "How many"): "Four wheels? 4",           # 1
    ("db/r3.jpg", "How many"): "4.",                       # 1
    ("db/r4.jpg", "Which animal"): "A",                    # 0
    ("db/r5.jpg", "Which animal"): "B",                    # 1
    ("db/r6.jpg", "Which animal"): "(B) dog",              # 1, less similar than r5
    ("db/r1.jpg", "Describe"): "A red car parked next to a green tree.",  # token F1 above the initial's: 1
    ("db/r7.jpg", "Describe"): "Some buildings.",          # 0
    ("db/r3.jpg", "Describe"): "A car is here.",           # F1 0.15 < initial's 0.18: 0
}
EXPECTED_PAIRS = {"s1#0": ("r2", "r1"), "s2#0": ("r5", "r4"), "s3#0": ("r1", "r7")}


class FakeModel:
    """Answers from the tables above; records every request it got."""

    def __init__(self):
        self.requests = []

    def answer(self, batch):
        self.requests.extend(batch)
        out = []
        for req in batch:
            question = req["prompt"].split("question: ")[-1] if len(req["images"]) == 2 else req["prompt"]
            start = next(key for key in INITIAL if key in question)
            out.append(REANSWERS[(req["images"][0], start)] if len(req["images"]) == 2 else INITIAL[start])
        return out


class FakeRetriever:
    """The Retriever protocol over the HITS table; records the queries it got."""

    def __init__(self, root=""):
        self.root, self.queries = root, []

    def retrieve(self, queries, k, exclude="self"):
        assert exclude == "self"  # data construction never shows a question its own image
        self.queries += list(queries)
        return [HITS[q[len(self.root):]][:k] for q in queries]


def run_pipeline(model):
    records = construct.split_turns(SAMPLES)
    records = construct.initial_answers(construct.retrieve(records, FakeRetriever(), 3), model)
    pairs = construct.reanswer_pairs(construct.expand_pairs(records), model)
    random.Random(3).shuffle(pairs)  # the grouping step must not depend on row order
    groups = construct.group_by_question(construct.evaluate_pairs(pairs, TokenF1Scorer()))
    return records, groups, construct.select_pairs(groups, max_samples=None, seed=0)


def test_split_turns():
    records = construct.split_turns(SAMPLES)
    assert [r["qid"] for r in records] == ["s1#0", "s1#1", "s2#0", "s3#0"]  # s4 has no image
    assert records[0]["question"] == "What colour is the car?" + SHORT and records[0]["answer"] == "Red"
    assert records[3]["question"] == "Describe the scene."
    assert [r["answer_type"] for r in records] == ["short", "short", "mc", "open"]


def test_retrieve_roots_queries_and_keeps_hits_as_items():
    retriever = FakeRetriever(root="/data/")
    records = construct.retrieve(construct.split_turns(SAMPLES[:2]), retriever, 2, image_root="/data")
    assert retriever.queries == ["/data/images/q1.jpg", "/data/images/q1.jpg", "/data/images/q2.jpg"]
    assert records[2]["retrieved"] == [
        {"id": "r4", "image": "db/r4.jpg", "caption": "caption of r4", "score": 0.95},
        {"id": "r5", "image": "db/r5.jpg", "caption": "caption of r5", "score": 0.6}]
    assert records[2]["image"] == "images/q2.jpg"  # the question keeps its own (relative) image name


def test_split_rejects_turns_out_of_order():
    with pytest.raises(construct.ConstructionError, match="sample 0 \\(id 'x'\\)"):
        construct.split_turns([{"id": "x", "image": "a.jpg", "conversations": [{"from": "gpt", "value": "hi"}]}])


def test_requests_show_retrieved_image_first_then_the_question_image():
    model = FakeModel()
    run_pipeline(model)
    initial = [r for r in model.requests if len(r["images"]) == 1]
    re_asks = [r for r in model.requests if len(r["images"]) == 2]
    assert len(initial) == 4 and len(re_asks) == 12
    assert initial[0] == {"prompt": "<image>\nWhat colour is the car?" + SHORT, "images": ["images/q1.jpg"]}
    assert re_asks[0]["images"] == ["db/r1.jpg", "images/q1.jpg"]
    assert re_asks[0]["prompt"] == REANSWER_TEMPLATE.format(question="What colour is the car?" + SHORT)


def test_labels_per_retrieved_item():
    _, groups, _ = run_pipeline(FakeModel())
    labels = {g["qid"]: [it["label"] for it in g["items"]] for g in groups}
    assert labels == {"s1#0": [0, 1, 1], "s1#1": [1, 1, 1], "s2#0": [0, 1, 1], "s3#0": [1, 0, 0]}
    evaluators = {g["qid"]: {it["evaluator"] for it in g["items"]} for g in groups}
    assert evaluators["s3#0"] == {"token_f1"} and evaluators["s1#0"] == {"match"}


def test_exactly_the_expected_positive_negative_pairs():
    _, _, samples = run_pipeline(FakeModel())
    got = {}
    for s in samples:
        by_label = {r["label"]: r["id"] for r in s["retrieval"]}
        got[s["id"]] = (by_label["positive"], by_label["negative"])
    assert got == EXPECTED_PAIRS


def test_training_sample_format():
    _, _, samples = run_pipeline(FakeModel())
    sample = next(s for s in samples if s["id"] == "s2#0")
    first, second = sample["retrieval"]
    assert sample["image"] == [first["image"], second["image"], "images/q2.jpg"]
    assert sample["conversations"][0]["value"] == (
        f"<Retrieval> 1. <image> {first['caption']}\n2. <image> {second['caption']}\n</Retrieval>\n"
        f"<image> Which animal is shown?{MC}"
    )
    assert sample["conversations"][1] == {"from": "gpt", "value": "B"}
    assert sample["conversations"][0]["value"].count("<image>") == len(sample["image"]) == 3


def test_positive_first_or_second_varies_but_is_seeded():
    groups = run_pipeline(FakeModel())[1]
    many = [dict(g, qid=f"{g['qid']}-{n}") for n in range(20) for g in groups]
    a, b = construct.select_pairs(many, None, seed=0), construct.select_pairs(many, None, seed=0)
    assert a == b
    firsts = {s["retrieval"][0]["label"] for s in a}
    assert firsts == {"positive", "negative"}


def test_max_samples_keeps_a_seeded_subset_in_order():
    groups = run_pipeline(FakeModel())[1]
    samples = construct.select_pairs(groups, max_samples=2, seed=1)
    ids = [s["id"] for s in samples]
    assert len(ids) == 2 and set(ids) <= set(EXPECTED_PAIRS) and ids == sorted(ids)


def test_grouping_refuses_a_missing_rank():
    model = FakeModel()
    records = construct.initial_answers(construct.retrieve(construct.split_turns(SAMPLES[:1]), FakeRetriever(), 3), model)
    pairs = construct.evaluate_pairs(construct.reanswer_pairs(construct.expand_pairs(records), model), TokenF1Scorer())
    with pytest.raises(construct.ConstructionError, match="question s1#0: re-answers for ranks \\[0, 2\\]"):
        construct.group_by_question([p for p in pairs if not (p["qid"] == "s1#0" and p["rank"] == 1)])
