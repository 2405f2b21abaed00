"""The vqa_eval task. With a scripted answerer every metric is worked out by hand: POPE, exact match
on LLaVA VQA records, VQA accuracy and multiple choice; RAG requests put other database images
first and the query last; the image controls build the requests they promise; bad configs are named.
One run with the real tiny model checks the answerer path end to end."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf
from PIL import Image

import mmrag  # noqa: F401
from mmrag.common.errors import ConfigError, DataFormatError
from mmrag.common.registry import TASKS
from mmrag.processors import get_template
from mmrag.retrieval.clip_embedder import ClipEmbedder
from mmrag.retrieval.dense_index import build_database
from mmrag.tasks import vqa_eval
from mmrag.tasks.vqa_eval import VqaEvalTask

SUFFIX = " Answer yes or no."
QUESTIONS = [  # label, then the scripted answer and the POPE reading of it
    {"question_id": 1, "image": "a.png", "text": "Is there a cat in the image?", "label": "yes"},   # "Yes, there is a cat." yes
    {"question_id": 2, "image": "a.png", "text": "Is there a dog in the image?", "label": "no"},    # "No." no
    {"question_id": 3, "image": "b.png", "text": "Is there a car in the image?", "label": "yes"},   # "There is no car." no
    {"question_id": 4, "image": "b.png", "text": "Is there a tree in the image?", "label": "no"},   # "Yes" yes
    {"question_id": 5, "image": "c.png", "text": "Is there a bird in the image?", "label": "yes"},  # "Yes." yes
]
SCRIPT = {"cat": "Yes, there is a cat.", "dog": "No.", "car": "There is no car.", "tree": "Yes", "bird": "Yes.",
          "objects": "Two.", "pet": "no", "colour": "(B) blue", "wheels": "Two", "shade": "red", "zero": "none",
          "letter": "B", "guess": "I think the answer is C", "animal": "a tabby cat"}


class ScriptedAnswerer:
    """Answers by the first SCRIPT keyword in the prompt; keeps every request."""

    made = []

    def __init__(self, model, processor, batch_size, max_new_tokens, progress=False):
        self.requests = []
        ScriptedAnswerer.made.append(self)

    def answer(self, requests):
        self.requests += list(requests)
        return [next(a for key, a in SCRIPT.items() if key in r["prompt"]) for r in requests]


class ScriptedTask(VqaEvalTask):
    def build_processor(self, cfg, model):
        return None


@pytest.fixture
def scripted(monkeypatch):
    ScriptedAnswerer.made = []
    monkeypatch.setattr(vqa_eval, "ModelAnswerer", ScriptedAnswerer)
    return ScriptedAnswerer.made


@pytest.fixture
def world(tmp_path):
    (tmp_path / "images").mkdir()
    sizes = {"a.png": (32, 32), "b.png": (48, 32), "c.png": (32, 32), "d.png": (32, 32)}
    colours = {"a.png": (250, 10, 10), "b.png": (10, 250, 10), "c.png": (200, 40, 40), "d.png": (10, 10, 250)}
    for name, size in sizes.items():
        Image.new("RGB", size, colours[name]).save(tmp_path / "images" / name)
    (tmp_path / "pope").mkdir()
    (tmp_path / "pope" / "random.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return tmp_path


def eval_cfg(world, model_cfg=None, **evaluation):
    ev = OmegaConf.merge(VqaEvalTask.DEFAULTS["evaluation"], {
        "question_file": str(world / "pope" / "{split}.jsonl"), "image_root": str(world / "images"),
        "splits": ["random"], "prompt_suffix": SUFFIX, "batch_size": 3, "max_new_tokens": 4}, evaluation)
    return OmegaConf.create({"evaluation": ev, "model": model_cfg or {}})


def run(world, **evaluation):
    cfg = eval_cfg(world, **evaluation)
    return ScriptedTask(cfg).evaluate(None, cfg, world / "out")


def answers(world, split="random"):
    return [json.loads(line) for line in (world / "out" / f"answers_{split}.jsonl").read_text().splitlines()]


def test_pope_metrics_by_hand(world, scripted):
    metrics = run(world)
    # predictions yes, no, no, yes, yes against yes, no, yes, no, yes: TP 2 (1, 5), TN 1 (2), FN 1 (3), FP 1 (4)
    expected = {"accuracy": 3 / 5, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "yes_ratio": 3 / 5,
                "tp": 2, "fp": 1, "tn": 1, "fn": 1, "num": 5, "num_empty": 0}
    assert metrics["random"] == pytest.approx(expected)
    assert json.loads((world / "out" / "results.json").read_text()) == metrics
    assert (world / "out" / "results.png").read_bytes()[:4] == b"\x89PNG"
    rows = answers(world)
    assert [r["correct"] for r in rows] == [1, 1, 0, 0, 1]
    assert rows[0]["prompt"] == "<image>\nIs there a cat in the image? Answer yes or no."
    assert rows[0]["images"] == [str(world / "images" / "a.png")] and rows[0]["answer"] == "yes"
    assert rows[2]["prediction"] == "There is no car." and rows[0]["retrieved"] == []


def test_rag_puts_other_database_images_first_and_the_query_last(world, scripted):
    embedder = ClipEmbedder({"num_workers": 0, "device": "cpu"})
    names = ["a.png", "b.png", "c.png", "d.png"]
    vectors = embedder.encode_images([world / "images" / n for n in names])
    items = [{"id": n[0], "image": f"images/{n}", "caption": f"picture {n[0]}"} for n in names]
    build_database(world / "db", vectors, items, embedder_cfg=embedder.cfg, image_root=world, progress=False)
    run(world, max_samples=2, retrieval={"mode": "rag", "database": str(world / "db"), "k": 2})
    (answerer,) = scripted
    for request, question in zip(answerer.requests, QUESTIONS):  # both questions are about image a
        retrieved = [r["id"] for r in request["retrieved"]]
        assert len(retrieved) == 2 and "a" not in retrieved
        assert request["images"] == [str((world / "images" / f"{i}.png").resolve()) for i in retrieved] + \
            [str(world / "images" / "a.png")]
        assert request["prompt"] == (f"<Retrieval> 1. <image> picture {retrieved[0]}\n2. <image> picture {retrieved[1]}\n"
                                     f"</Retrieval>\n<image> {question['text']}{SUFFIX}")
        assert request["system"] == get_template("vicuna_v1_retrieval").system


def test_blank_control_shows_a_grey_image_of_the_same_size(world, scripted):
    run(world, image_control="blank")
    for row, question in zip(answers(world), QUESTIONS):
        (shown,) = row["images"]
        with Image.open(shown) as blank, Image.open(world / "images" / question["image"]) as original:
            assert blank.size == original.size and [c for _, c in blank.getcolors()] == [(128, 128, 128)]
    assert sorted(p.name for p in (world / "out" / "image_control").iterdir()) == ["blank_32x32.png", "blank_48x32.png"]


def test_shuffled_control_shows_another_evaluated_image_consistently(world, scripted):
    run(world, image_control="shuffled", seed=3)
    shown = {}
    for row in answers(world):
        (image,) = row["images"]
        shown.setdefault(row["image"], set()).add(image)
    root = str(world / "images")
    assert all(len(s) == 1 for s in shown.values())  # one replacement per original image
    mapping = {orig: s.pop() for orig, s in shown.items()}
    assert all(new != f"{root}/{orig}" for orig, new in mapping.items())
    assert sorted(mapping.values()) == sorted(f"{root}/{orig}" for orig in mapping)  # a permutation of a, b, c
    first = [r["images"] for r in answers(world)]
    run(world, image_control="shuffled", seed=3)
    assert [r["images"] for r in answers(world)] == first  # seeded


def test_text_only_control_asks_without_any_image(world, scripted):
    run(world, image_control="text_only")
    for request, question in zip(scripted[0].requests, QUESTIONS):
        assert request == {"prompt": question["text"] + SUFFIX, "images": []}
    with pytest.raises(ConfigError, match="text_only"):
        run(world, image_control="text_only", retrieval={"mode": "rag", "database": str(world / "db")})


def test_exact_match_on_llava_vqa_records(world, scripted):
    def sample(sid, *turns):
        conv = [{"from": f, "value": v} for pair in turns for f, v in zip(("human", "gpt"), pair)]
        conv[0]["value"] = "<image>\n" + conv[0]["value"]
        return {"id": sid, "image": "images/a.png", "conversations": conv}

    llava = [sample("s1_vqa", ("How many objects? Answer with a single word.", "two"),
                    ("Is there a pet? Answer yes or no.", "yes")),
             sample("s2_vqa", ("Which colour is it?\nA. red\nB. blue", "B")),
             sample("s1_caption", ("Describe it.", "A red square on a plain background."))]
    (world / "llava.json").write_text(json.dumps(llava))
    metrics = run(world, format="llava_vqa", question_file=str(world / "llava.json"), image_root=str(world),
                  id_suffixes=["_vqa"], splits=["test"], scorer="exact_match", prompt_suffix="")
    # "Two." = two; "no" != yes; "(B) blue" picks B; the caption record is not a VQA item
    assert metrics == {"test": {"accuracy": 2 / 3, "num": 3, "by_family": {
        "How many": {"accuracy": 1.0, "num": 1}, "Is there": {"accuracy": 0.0, "num": 1},
        "Which colour": {"accuracy": 1.0, "num": 1}}}}
    assert [r["question_id"] for r in answers(world, "test")] == ["s1_vqa#0", "s1_vqa#1", "s2_vqa#0"]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_vqa_accuracy_and_multiple_choice(world, scripted):
    write_rows(world / "vqa.jsonl", [
        {"question_id": 1, "image": "a.png", "question": "How many wheels?", "answers": ["2", "2", "two", "3"]},
        {"question_id": 2, "image": "a.png", "question": "Which shade?", "answers": ["red", "maroon", "dark red"]},
        {"question_id": 3, "image": "b.png", "question": "How many zero things?", "answers": ["0", "0", "1"]}])
    metrics = run(world, format="vqa_jsonl", question_file=str(world / "vqa.jsonl"), splits=["val"],
                  scorer="vqa_accuracy", prompt_suffix="")
    # "Two" -> 2 matches three answers (1.0); "red" one (1/3); "none" -> 0 matches two (2/3)
    assert metrics["val"]["accuracy"] == pytest.approx((1 + 1 / 3 + 2 / 3) / 3)
    assert [r["correct"] for r in answers(world, "val")] == pytest.approx([1, 1 / 3, 2 / 3])
    write_rows(world / "mc.jsonl", [
        {"question_id": 1, "image": "a.png", "question": "Pick a letter.", "answer": "B"},
        {"question_id": 2, "image": "a.png", "question": "Make a guess.", "answer": "A"},
        {"question_id": 3, "image": "a.png", "question": "Which animal?", "answer": "A",
         "options": {"A": "tabby cat", "B": "dog"}}])
    metrics = run(world, format="vqa_jsonl", question_file=str(world / "mc.jsonl"), splits=["dev"],
                  scorer="multiple_choice", prompt_suffix="")
    # "B" = B; "... the answer is C" != A; "a tabby cat" names option A
    assert [r["correct"] for r in answers(world, "dev")] == [1, 0, 1]
    assert metrics["dev"]["accuracy"] == pytest.approx(2 / 3)


def test_bad_config_and_bad_file_are_named(world, scripted):
    with pytest.raises(ConfigError, match="evaluation.retrieval.mode"):
        run(world, retrieval={"mode": "bm25"})
    with pytest.raises(ConfigError, match="evaluation.image_control"):
        run(world, image_control="upside_down")
    with pytest.raises(ConfigError, match="evaluation.question_file"):
        run(world, question_file=None)
    with pytest.raises(Exception, match="exact_matc"):
        run(world, scorer="exact_matc")
    (world / "pope" / "random.jsonl").write_text(json.dumps({"question_id": 1, "image": "a.png", "text": "?"}) + "\n")
    with pytest.raises(DataFormatError, match="random.jsonl: line 1"):
        run(world)


def test_the_real_tiny_model_answers_every_request(world, tiny_model):
    cfg = eval_cfg(world, tiny_model.cfg, max_samples=3)
    task = TASKS.get("vqa_eval")(cfg)
    metrics = task.evaluate(tiny_model, cfg, world / "out")
    rows = answers(world)
    assert metrics["random"]["num"] == 3 and len(rows) == 3
    assert metrics["random"]["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / 3)
    cfg = eval_cfg(world, tiny_model.cfg, max_samples=2, image_control="text_only")
    task.evaluate(tiny_model, cfg, world / "out")
    assert [r["images"] for r in answers(world)] == [[], []] and all(isinstance(r["prediction"], str) for r in answers(world))


LISTS = {"a.png": "a cat and a tree.", "b.png": "a tree.", "c.png": "a bird."}


class DescribingAnswerer(ScriptedAnswerer):
    """Describes an image by LISTS; answers a question asked after a description from that description."""

    def answer(self, requests, max_new_tokens=None):
        self.requests += list(requests)
        out = []
        for r in requests:
            if "conversation" in r:
                described, question = r["conversation"][1]["value"], r["conversation"][2]["value"]
                out.append("Yes." if question.split()[3] in described else "No.")
            else:
                out.append(LISTS[r["images"][0].split("/")[-1]])
        return out


def test_describe_first_asks_each_image_once_then_the_question_after_the_description(world, monkeypatch):
    ScriptedAnswerer.made = []
    monkeypatch.setattr(vqa_eval, "ModelAnswerer", DescribingAnswerer)
    metrics = run(world, describe_first="List the objects in the image.", prompt_suffix="")["random"]
    # by hand: cat on a -> Yes (yes), dog on a -> No (no), car on b -> No (label yes), tree on b -> Yes
    # (label no), bird on c -> Yes (yes): 3 of 5 right, 2 of them "yes" among 3 "yes" predictions
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["yes_ratio"] == pytest.approx(0.6)
    first, second = ScriptedAnswerer.made[0].requests[:3], ScriptedAnswerer.made[0].requests[3:]
    assert sorted(r["images"][0].split("/")[-1] for r in first) == ["a.png", "b.png", "c.png"]
    assert all(r["prompt"] == "<image>\nList the objects in the image." for r in first)
    assert len(second) == 5 and all(r["conversation"][0]["value"].startswith("<image>") for r in second)
    saved = answers(world)
    assert [a["description"] for a in saved] == [LISTS["a.png"]] * 2 + [LISTS["b.png"]] * 2 + [LISTS["c.png"]]
