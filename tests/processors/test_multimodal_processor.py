"""Collation against hand-built tensors: right padding for training, left for generation, labels
masked everywhere but the answers (+ EOS), images as placeholder runs; `<context>` expansion."""
import pytest
import torch

from mmrag.processors import (IGNORE_INDEX, IMAGE_PLACEHOLDER_ID, ImageProcessor, MultimodalProcessor,
                              VisualInputSpec, get_template, load_tokenizer)
from mmrag.processors.tokenization import CONTEXT_PLACEHOLDER_ID

P, I, X = 0, IMAGE_PLACEHOLDER_ID, IGNORE_INDEX


class WordTokenizer:
    """A tokenizer whose ids are written by hand: one id per known word, bos 1, eos 2, pad 0."""

    VOCAB = {"S:": 10, "Q:": 11, "A:": 12, "hi": 20, "cat": 21, "dog": 22, "red": 23}
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.VOCAB[w] for w in text.split()]}


def processor(n_visual=2, spec=None, **kw):
    from mmrag.processors.conversation import ConversationTemplate

    template = ConversationTemplate(name="t", system="S:", user="Q: {content}", assistant_prefix=" A:",
                                    answer=" {content}", eos_after_answer=True, turn_separator="")
    images = ImageProcessor(8, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return MultimodalProcessor(WordTokenizer(), template, images, n_visual, spec=spec, **kw)


def sample(question, answer, n_images):
    turns = [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    return {"conversations": turns, "pixel_values": torch.zeros(n_images, 3, 8, 8)}


def test_training_batch_pads_right_and_masks_all_but_answers():
    batch = processor().collate([sample("<image> hi", "cat", 1), sample("dog", "red cat", 0)])
    assert batch["input_ids"].tolist() == [[1, 10, 11, I, I, 20, 12, 21, 2],
                                           [1, 10, 11, 22, 12, 23, 21, 2, P]]
    assert batch["labels"].tolist() == [[X, X, X, X, X, X, X, 21, 2],
                                        [X, X, X, X, X, 23, 21, 2, X]]
    assert batch["attention_mask"].tolist() == [[1] * 9, [1] * 8 + [0]]
    assert batch["pixel_values"].shape == (1, 3, 8, 8)


def test_generation_batch_pads_left():
    prompts = [{"conversations": [{"from": "human", "value": "<image> hi"}], "pixel_values": torch.zeros(1, 3, 8, 8)},
               {"conversations": [{"from": "human", "value": "dog"}], "pixel_values": torch.zeros(0, 3, 8, 8)}]
    batch = processor().collate(prompts, generation=True)
    assert batch["input_ids"].tolist() == [[1, 10, 11, I, I, 20, 12], [P, P, 1, 10, 11, 22, 12]]
    assert batch["attention_mask"].tolist() == [[1] * 7, [0, 0] + [1] * 5]


def test_template_argument_replaces_the_template_for_one_call():
    import dataclasses

    proc = processor()
    other = dataclasses.replace(proc.template, system="hi")
    batch = proc.collate([sample("dog", "cat", 0)], template=other)
    assert batch["input_ids"][0].tolist()[:2] == [1, 20] and proc.template.system == "S:"


def test_context_placeholder_expands_per_example_and_collates_the_examples():
    spec = VisualInputSpec(2, 8, (0.5,) * 3, (0.5,) * 3, context_fixed_tokens=1, context_tokens_per_example=2)
    s = sample("<context> hi", "cat", 0)
    s["context"] = {"pixel_values": torch.zeros(2, 3, 8, 8), "texts": ["red cat", "dog"]}
    batch = processor(spec=spec).collate([s])
    C = CONTEXT_PLACEHOLDER_ID
    assert batch["input_ids"].tolist() == [[1, 10, 11, C, C, C, C, C, 20, 12, 21, 2]]  # 1 + 2 x 2 examples
    ctx = batch["context"]
    assert ctx["text_ids"].tolist() == [[23, 21], [22, P]] and ctx["text_mask"].tolist() == [[1, 1], [1, 0]]
    assert ctx["image_counts"].tolist() == [2] and ctx["text_counts"].tolist() == [2]


def test_decode_drops_special_tokens():
    tok = load_tokenizer({})
    proc = MultimodalProcessor(tok, get_template("vicuna_v1"), ImageProcessor(8, (0.5,) * 3, (0.5,) * 3), 1)
    ids = tok("yes", add_special_tokens=False)["input_ids"]
    assert proc.decode(torch.tensor([ids + [tok.eos_token_id, tok.pad_token_id]])) == ["yes"]


@pytest.mark.parametrize("n_images", [0, 2])
def test_image_count_mismatch_is_named(n_images):
    from mmrag.processors.tokenization import ImageCountError

    with pytest.raises(ImageCountError, match="bad: the text has 1 '<image>'"):
        processor().collate([{**sample("<image> hi", "cat", n_images), "id": "bad"}])


# ---------------------------------------------------------------- model.image_placement
def test_after_text_puts_the_image_after_the_question_in_training():
    batch = processor(image_placement="after_text").collate([sample("<image>\nhi dog", "cat", 1)])
    assert batch["input_ids"].tolist() == [[1, 10, 11, 20, 22, I, I, 12, 21, 2]]   # S: Q: hi dog <img> A: cat eos
    assert batch["labels"].tolist() == [[X, X, X, X, X, X, X, X, 21, 2]]


def test_after_text_in_generation_and_other_turns():
    turns = [{"from": "human", "value": "<image> hi <image> dog"}, {"from": "gpt", "value": "cat"},
             {"from": "human", "value": "red"}]
    batch = processor(image_placement="after_text").collate(
        [{"conversations": turns, "pixel_values": torch.zeros(2, 3, 8, 8)}], generation=True)
    # both images, in order, after "hi dog"; the answer and the imageless second turn as written
    assert batch["input_ids"].tolist() == [[1, 10, 11, 20, 22, I, I, I, I, 12, 21, 2, 11, 23, 12]]


def test_as_written_leaves_the_batch_unchanged():
    samples = [sample("<image> hi", "cat", 1), sample("dog", "red cat", 0)]
    default, explicit = processor().collate(samples), processor(image_placement="as_written").collate(samples)
    assert default.keys() == explicit.keys() and all(torch.equal(default[k], explicit[k]) for k in default)
    assert explicit["input_ids"].tolist() == [[1, 10, 11, I, I, 20, 12, 21, 2], [1, 10, 11, 22, 12, 23, 21, 2, P]]


def test_image_placement_from_the_model_config_and_validated():
    from omegaconf import OmegaConf

    from mmrag.common.errors import ConfigError

    cfg = OmegaConf.create({"conversation_template": "vicuna_v1", "image_token": "<image>", "max_txt_len": 64,
                            "pad_to_square": True, "image_placement": "after_text"})
    spec = VisualInputSpec(2, 8, (0.5,) * 3, (0.5,) * 3)
    assert MultimodalProcessor.from_config(cfg, spec, tokenizer=WordTokenizer()).image_placement == "after_text"
    cfg.image_placement = "before_text"
    with pytest.raises(ConfigError, match="model.image_placement: 'before_text' is not one of as_written, after_text"):
        MultimodalProcessor.from_config(cfg, spec, tokenizer=WordTokenizer())
