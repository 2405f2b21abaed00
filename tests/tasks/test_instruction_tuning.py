"""Instruction-tuning evaluation: short-answer accuracy on hand-made predictions, and the task's
files for a tiny LLaVA test file with scripted generations."""
from __future__ import annotations

import json

from omegaconf import OmegaConf
from PIL import Image

import mmrag  # noqa: F401
from mmrag.datasets.multimodal_dataset import BUILDER_DEFAULTS
from mmrag.tasks import instruction_tuning
from mmrag.tasks.instruction_tuning import InstructionTuningTask, short_answer_accuracy


def test_short_answer_accuracy_by_hand():
    golds = ["Blue", "two", "The red car", "A long answer of many words here", "yes"]
    preds = ["blue.", "Two\nand more", "red car!", "anything", "No"]
    # short golds (<= 3 words): 0, 1, 2, 4; matches: blue = blue, first line two = two, red car = red car, no != yes
    assert short_answer_accuracy(preds, golds, 3) == {"short_answer_accuracy": 3 / 4, "n_short": 4, "n": 5}
    assert short_answer_accuracy(preds, golds, 1) == {"short_answer_accuracy": 2 / 3, "n_short": 3, "n": 5}
    assert short_answer_accuracy([], [], 3) == {"short_answer_accuracy": 0.0, "n_short": 0, "n": 0}


def test_evaluate_writes_metrics_and_predictions(tmp_path, tiny_model, monkeypatch):
    Image.new("RGB", (32, 32), (90, 10, 10)).save(tmp_path / "a.png")
    records = [{"id": f"r{i}", "image": "a.png", "conversations": [
        {"from": "human", "value": f"<image>\nQuestion {i}?"}, {"from": "gpt", "value": gold}]}
        for i, gold in enumerate(["cat", "two dogs", "a very long description of it"])]
    (tmp_path / "chat_test.json").write_text(json.dumps(records))
    scripted = ["The cat.", "three dogs", "whatever"]
    monkeypatch.setattr(instruction_tuning, "generate_answers", lambda model, processor, dataset, *a, **k: scripted)
    ds = {**BUILDER_DEFAULTS, "builder": "llava_instruct", "data_path": str(tmp_path / "chat_{split}.json"),
          "image_root": str(tmp_path)}
    cfg = OmegaConf.create({"model": tiny_model.cfg, "datasets": {"chat": ds},
                            "evaluation": {**InstructionTuningTask.DEFAULTS["evaluation"], "max_samples": None}})
    results = InstructionTuningTask(cfg).evaluate(tiny_model, cfg, tmp_path / "out")
    # short golds: cat (matched by "The cat."), two dogs (not by "three dogs")
    assert results == {"chat": {"short_answer_accuracy": 0.5, "n_short": 2, "n": 3}}
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == results
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions_chat.jsonl").read_text().splitlines()]
    assert rows == [{"id": f"r{i}", "prediction": p, "answer": r["conversations"][-1]["value"]}
                    for i, (p, r) in enumerate(zip(scripted, records))]


def test_generate_answers_prompts_without_the_last_answer(tmp_path, tiny_model):
    from mmrag.processors import build_processor

    Image.new("RGB", (32, 32), (90, 10, 10)).save(tmp_path / "a.png")
    (tmp_path / "chat_test.json").write_text(json.dumps([{"id": "r0", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "cat"}]}]))
    processor = build_processor(tiny_model.cfg, tiny_model)
    ds_cfg = OmegaConf.create({**BUILDER_DEFAULTS, "data_path": str(tmp_path / "chat_{split}.json"), "image_root": str(tmp_path)})
    from mmrag.common.registry import DATASETS

    dataset = DATASETS.get("llava_instruct").build(ds_cfg, processor, split="test", name="chat")
    (answer,) = instruction_tuning.generate_answers(tiny_model, processor, dataset, batch_size=1, max_new_tokens=3)
    assert isinstance(answer, str)
    prompt = instruction_tuning._PromptView(dataset)[0]
    assert prompt["conversations"] == [{"from": "human", "value": "<image>\nWhat is it?"}] and "target_ids" not in prompt
