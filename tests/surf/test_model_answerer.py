"""ModelAnswerer: one answer per request, images spliced in request order, per-request system prompts."""
from __future__ import annotations


import pytest
import torch
from PIL import Image

import mmrag  # noqa: F401
from mmrag.surf.answerer import Answerer
from mmrag.surf.model_answerer import AnswerRequestError, ModelAnswerer, template_system

COLOURS = {"red.png": (255, 0, 0), "green.png": (0, 255, 0), "blue.png": (0, 0, 255)}


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


@pytest.fixture
def images(tmp_path):
    for name, colour in COLOURS.items():
        Image.new("RGB", (40, 24), colour).save(tmp_path / name)
    return tmp_path


class CollateSpy:
    """Wraps model.collate to keep every generation batch (and the prompt text it rendered)."""

    def __init__(self, model, monkeypatch) -> None:
        self.model, self.batches, self.systems = model, [], []
        self.original = model.collate
        monkeypatch.setattr(model, "collate", self)

    def __call__(self, samples, generation=False):
        self.systems.append(self.model.template.system)
        batch = self.original(samples, generation=generation)
        self.batches.append((samples, batch))
        return batch


def test_one_answer_per_request_images_in_order(model, images, monkeypatch):
    spy = CollateSpy(model, monkeypatch)
    answerer = ModelAnswerer(model, batch_size=2, max_new_tokens=3, image_root=images)
    requests = [
        {"prompt": "<image> <image> <image> Which comes last?", "images": ["green.png", "blue.png", "red.png"]},
        {"prompt": "<image>\nWhat colour?", "images": ["blue.png"]},
        {"prompt": "<Retrieval> 1. <image> a cap\n</Retrieval>\n<image> Is it red?", "images": ["red.png", "green.png"],
         "system": template_system("vicuna_v1_retrieval")},
    ]
    assert isinstance(answerer, Answerer)
    answers = answerer.answer(requests)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    # the plain requests share one batch, the system-prompt request gets its own
    assert [len(samples) for samples, _ in spy.batches] == [2, 1]
    first_samples, first_batch = spy.batches[0]
    expected = torch.stack([model.image_processor(images / n) for n in ["green.png", "blue.png", "red.png", "blue.png"]])
    assert torch.equal(first_batch["pixel_values"], expected)
    assert torch.equal(spy.batches[1][1]["pixel_values"],
                       torch.stack([model.image_processor(images / n) for n in ["red.png", "green.png"]]))
    assert spy.systems == [model.template.system, template_system("vicuna_v1_retrieval")]
    assert model.template.system != template_system("vicuna_v1_retrieval")  # restored afterwards


def test_answer_equals_direct_greedy_generation(model, images):
    answerer = ModelAnswerer(model, batch_size=4, max_new_tokens=4, image_root=images)
    request = {"prompt": "<image>\nIs there a square?", "images": ["red.png"]}
    sample = {"id": "x", "conversations": [{"from": "human", "value": request["prompt"]}],
              "pixel_values": model.image_processor(images / "red.png")[None]}
    out = model.generate(model.collate([sample], generation=True), max_new_tokens=4, do_sample=False, num_beams=1)
    assert answerer.answer([request]) == [model.tokenizer.decode(out[0], skip_special_tokens=True).strip()]


def test_bad_request_is_named(model, images):
    with pytest.raises(AnswerRequestError, match="answer request 1: needs 'prompt' or 'conversation'"):
        ModelAnswerer(model, image_root=images).answer([{"prompt": "<image> hi", "images": ["red.png"]}, {"images": []}])
