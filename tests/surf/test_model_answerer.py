"""ModelAnswerer: one answer per request, images spliced in request order, per-request system prompts
(chosen by passing a template to the processor, never by changing the processor or model), and
answers equal to a hand-rolled greedy decode of a hand-written Vicuna v1 prompt."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

import mmrag  # noqa: F401
from mmrag.processors import IMAGE_PLACEHOLDER_ID, build_processor
from mmrag.surf.answerer import Answerer
from mmrag.surf.model_answerer import AnswerRequestError, ModelAnswerer, template_system

COLOURS = {"red.png": (255, 0, 0), "green.png": (0, 255, 0), "blue.png": (0, 0, 255)}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                 "helpful, detailed, and polite answers to the user's questions. ")


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


@pytest.fixture(scope="module")
def processor(model):
    return build_processor(model.cfg, model)


@pytest.fixture
def images(tmp_path):
    for name, colour in COLOURS.items():
        Image.new("RGB", (40, 24), colour).save(tmp_path / name)
    return tmp_path


def centre_colour(pixels: torch.Tensor):
    """The 0..255 colour at the centre of a normalised [3,H,W] image (inside the pasted picture)."""
    h, w = pixels.shape[1:]
    return tuple(round((float(pixels[c, h // 2, w // 2]) * CLIP_STD[c] + CLIP_MEAN[c]) * 255) for c in range(3))


class CollateSpy:
    """Wraps processor.collate to keep every generation batch and the template it was given."""

    def __init__(self, processor, monkeypatch) -> None:
        self.batches, self.templates, self.original = [], [], processor.collate
        monkeypatch.setattr(processor, "collate", self)

    def __call__(self, samples, generation=False, template=None):
        self.templates.append(template)
        batch = self.original(samples, generation=generation, template=template)
        self.batches.append((samples, batch))
        return batch


def test_one_answer_per_request_images_in_order(model, processor, images, monkeypatch):
    spy = CollateSpy(processor, monkeypatch)
    answerer = ModelAnswerer(model, processor, batch_size=2, max_new_tokens=3, image_root=images)
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
    first, second = spy.batches[0][1]["pixel_values"], spy.batches[1][1]["pixel_values"]
    assert [centre_colour(p) for p in first] == [(0, 255, 0), (0, 0, 255), (255, 0, 0), (0, 0, 255)]
    assert [centre_colour(p) for p in second] == [(255, 0, 0), (0, 255, 0)]
    # the rendered prompts: Vicuna's system sentence, then the retrieval one replacing it
    texts = [processor.tokenizer.decode([t for t in b["input_ids"][0].tolist() if t >= 0], skip_special_tokens=True)
             for _, b in spy.batches]
    assert texts[0].startswith(VICUNA_SYSTEM.strip()) and "Retrieved image-caption pairs" not in texts[0]
    assert "Retrieved image-caption pairs may come with a question" in texts[1]
    assert spy.templates[0].system == VICUNA_SYSTEM and processor.template.system == VICUNA_SYSTEM  # untouched


def hand_greedy(model, tokenizer, ids, pixels, max_new_tokens):
    """Greedy decoding by hand: full forward each step, arg-max, stop at EOS."""
    embeds = model.embed(torch.tensor([ids]), pixels)
    table, new = model.llm.get_input_embeddings(), []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = int(model.llm(inputs_embeds=embeds).logits[0, -1].argmax())
            if token == tokenizer.eos_token_id:
                break
            new.append(token)
            embeds = torch.cat([embeds, table(torch.tensor([[token]]))], dim=1)
    return tokenizer.decode(new, skip_special_tokens=True).strip()


def test_answer_equals_hand_greedy_decode_of_hand_written_prompt(model, processor, images):
    answerer = ModelAnswerer(model, processor, batch_size=4, max_new_tokens=4, image_root=images)
    request = {"prompt": "<image>\nIs there a square?", "images": ["red.png"]}
    tok = processor.tokenizer

    def words(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    # Vicuna v1: "<system> USER: <image>\nIs there a square? ASSISTANT:"; the image as its visual tokens
    ids = ([tok.bos_token_id] + words(VICUNA_SYSTEM) + words("USER: ")
           + [IMAGE_PLACEHOLDER_ID] * model.num_visual_tokens + words("\nIs there a square? ASSISTANT:"))
    pixels = processor.image_processor(images / "red.png")[None]
    assert answerer.answer([request]) == [hand_greedy(model, tok, ids, pixels, 4)]


def test_bad_request_is_named(model, processor, images):
    with pytest.raises(AnswerRequestError, match="answer request 1: needs 'prompt' or 'conversation'"):
        ModelAnswerer(model, processor, image_root=images).answer(
            [{"prompt": "<image> hi", "images": ["red.png"]}, {"images": []}])


def test_a_chat_format_system_prompt_keeps_its_newline():
    """chatml_retrieval's system turn ends in "<|im_end|>\\n" (as the model trained with it); a plain
    text system prompt gets the single trailing space of the Vicuna templates."""
    from mmrag.processors import get_template
    from mmrag.surf.model_answerer import with_system

    chatml = get_template("chatml")
    system = template_system("chatml_retrieval")
    assert system.startswith("<|im_start|>system\n") and system.endswith("<|im_end|>\n")
    assert with_system(chatml, system).system == system
    assert with_system(chatml, "Be brief.").system == "Be brief. "
