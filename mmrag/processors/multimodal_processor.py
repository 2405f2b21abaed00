"""The processor: everything between a sample on disk and the tensors the model reads.

Built from the same `model:` config section as the model plus what the built model reports about
its inputs (`VisualInputSpec`: how many LLM positions one image fills, the tower's image size and
normalisation). It holds the tokenizer, the conversation template and the image processor, and
collates samples {conversations, pixel_values [n,3,H,W], regions?, target_ids?, id?, context?,
cell_targets?} into batches; `cell_targets` = one [cells, width] tensor (or None) per image, the names
each visual token should predict under the grounding loss (`processors.grounding`); `context` = the
retrieved examples {pixel_values [m,3,H,W], texts [str]} a context module reads, written where the
prompt says `<context>`.
The model never tokenises; a caller that wants another prompt format passes another template.
`image_placement` (`model.image_placement`): `as_written` keeps each `<image>` where the text has it;
`after_text` moves the `<image>`s of every human turn, in order, to the end of that turn's text, so in
a causal LLM the image positions come after (and can attend to) the question, in training and
generation alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from mmrag.common.errors import ConfigError
from mmrag.processors.conversation import ConversationTemplate, get_template
from mmrag.processors.grounding import collate_cell_targets
from mmrag.processors.image_processing import ImageProcessor, pixel_key
from mmrag.processors.tokenization import IGNORE_INDEX, EncodedSample, check_image_count, encode_segments
from mmrag.processors.tokenizers import load_tokenizer


@dataclass(frozen=True)
class VisualInputSpec:
    """What a model reports about its image input (`MultimodalLLM.visual_input_spec()`)."""

    num_visual_tokens: int           # LLM positions one `<image>` becomes
    image_size: int                  # square side the tower reads, in pixels
    image_mean: Tuple[float, ...]    # per-channel normalisation of the tower, on 0..1 pixel values
    image_std: Tuple[float, ...]
    context_fixed_tokens: int = 0        # context module: tokens per `<context>` ...
    context_tokens_per_example: int = 0  # ... plus these per retrieved example (0, 0: no context module)
    image_keys: bool = False             # the model caches its tower's features: batches carry each image's pixel_key

    def context_tokens(self, num_examples: int) -> int:
        return self.context_fixed_tokens + self.context_tokens_per_example * num_examples


IMAGE_PLACEMENTS = ("as_written", "after_text")


def check_image_placement(value: str) -> str:
    if value not in IMAGE_PLACEMENTS:
        raise ConfigError(f"model.image_placement: {value!r} is not one of {', '.join(IMAGE_PLACEMENTS)}")
    return value


def images_after_text(turns: Sequence[Dict[str, str]], image_token: str) -> List[Dict[str, str]]:
    """Each human turn with its `image_token`s removed from the text and put, in order, after it
    (one per line): "<image>\nIs there a cat?" -> "Is there a cat?\n<image>". Other turns unchanged."""
    moved = []
    for turn in turns:
        n = turn["value"].count(image_token) if turn["from"] == "human" else 0
        if n:
            text = " ".join(part.strip() for part in turn["value"].split(image_token) if part.strip())
            turn = {**turn, "value": "\n".join(([text] if text else []) + [image_token] * n)}
        moved.append(turn)
    return moved


class MultimodalProcessor:
    """Tokenizer + conversation template + image processor + collation, for one model config."""

    def __init__(self, tokenizer, template: ConversationTemplate, image_processor: ImageProcessor,
                 num_visual_tokens: int, image_token: str = "<image>", max_txt_len: int = 512,
                 spec: Optional[VisualInputSpec] = None, image_placement: str = "as_written") -> None:
        self.tokenizer, self.template, self.image_processor = tokenizer, template, image_processor
        self.num_visual_tokens, self.image_token, self.max_txt_len = num_visual_tokens, image_token, max_txt_len
        self.spec, self.image_placement = spec, check_image_placement(image_placement)

    @classmethod
    def from_config(cls, model_cfg, spec: VisualInputSpec, tokenizer=None) -> "MultimodalProcessor":
        """From the `model:` section (llm tokenizer, conversation_template, image_token, max_txt_len,
        pad_to_square, image_placement) and the built model's `spec`."""
        images = ImageProcessor(spec.image_size, spec.image_mean, spec.image_std, model_cfg.pad_to_square)
        return cls(tokenizer if tokenizer is not None else load_tokenizer(model_cfg.llm),
                   get_template(model_cfg.conversation_template), images, spec.num_visual_tokens,
                   model_cfg.image_token, model_cfg.max_txt_len, spec,
                   model_cfg.get("image_placement", "as_written"))

    # ------------------------------------------------------------------ one sample
    def encode_conversation(self, turns: Sequence[Dict[str, str]], n_images: int, where: str = "sample",
                            generation: bool = False, target_ids: Optional[List[int]] = None,
                            template: Optional[ConversationTemplate] = None, num_examples: int = 0) -> EncodedSample:
        """Token ids and labels for one sample. `target_ids` replaces the last answer's text by ids;
        `num_examples`: retrieved examples the sample's `<context>` stands for."""
        template = template or self.template
        if self.image_placement == "after_text":
            turns = images_after_text(turns, self.image_token)
        segments = template.segments(turns)
        if target_ids is not None:
            segments = segments[:-1] + [(list(target_ids), True)]
        encoded = encode_segments(
            self.tokenizer, segments, self.num_visual_tokens, self.image_token,
            eos_after_targets=template.eos_after_answer, max_length=0 if generation else self.max_txt_len,
            n_context_tokens=self.spec.context_tokens(num_examples) if self.spec is not None else 0,
        )
        check_image_count(encoded, n_images, where)
        return encoded

    # ------------------------------------------------------------------ batches
    def collate(self, samples: Sequence[Dict[str, Any]], generation: bool = False,
                template: Optional[ConversationTemplate] = None) -> Dict[str, torch.Tensor]:
        """Pad samples into a batch {input_ids, labels, attention_mask, pixel_values, regions?}.

        Training batches pad on the right; generation prompts on the left, so every prompt ends at
        the same position and generation continues all rows together. `template` replaces the
        processor's own conversation template for this call only.
        """
        encoded = [
            self.encode_conversation(s["conversations"], len(s["pixel_values"]), s.get("id", f"sample {i}"),
                                     generation, s.get("target_ids"), template, _num_examples(s))
            for i, s in enumerate(samples)
        ]
        batch = pad_encoded(encoded, self.tokenizer.pad_token_id, left=generation)
        pixel = [s["pixel_values"] for s in samples if len(s["pixel_values"])]
        batch["pixel_values"] = torch.cat(pixel) if pixel else torch.zeros(0, 3, 1, 1)
        if self.spec is not None and self.spec.image_keys:  # hashed here, in the loader's workers
            batch["image_keys"] = [pixel_key(p) for p in batch["pixel_values"]]
        if any(s.get("cell_targets") is not None for s in samples):  # the grounding loss's per-cell names
            per_image = [t for s in samples for t in (s.get("cell_targets") or [None] * len(s["pixel_values"]))]
            batch["cell_targets"] = collate_cell_targets(per_image, self.num_visual_tokens)
        if any(s.get("regions") is not None for s in samples):
            batch["regions"] = torch.cat([s["regions"] for s in samples if len(s["pixel_values"])])
        if any(s.get("context") is not None for s in samples):
            batch["context"] = self.collate_context([s.get("context") or {} for s in samples])
        return batch

    def collate_context(self, contexts: Sequence[Dict[str, Any]]) -> Dict[str, torch.Tensor]:
        """Retrieved examples per sample ({pixel_values [m,3,H,W], texts [str]}) -> the model's
        `context` input: all images, all texts right-padded, and the counts per sample."""
        pixels = [c["pixel_values"] for c in contexts if c.get("pixel_values") is not None and len(c["pixel_values"])]
        texts = [t for c in contexts for t in c.get("texts", [])]
        rows = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        width = max([len(r) for r in rows] + [1])
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r, dtype=torch.long), 1
        return {"pixel_values": torch.cat(pixels) if pixels else torch.zeros(0, 3, 1, 1),
                "image_counts": torch.tensor([len(c.get("pixel_values", [])) for c in contexts]),
                "text_ids": ids, "text_mask": mask,
                "text_counts": torch.tensor([len(c.get("texts", [])) for c in contexts])}

    def decode(self, ids) -> List[str]:
        """Generated id rows -> texts, special tokens dropped."""
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)


def _num_examples(sample: Dict[str, Any]) -> int:
    context = sample.get("context") or {}
    images = context.get("pixel_values")
    return max(len(images) if images is not None else 0, len(context.get("texts", [])))


def pad_encoded(encoded: Sequence[EncodedSample], pad_id: int, left: bool) -> Dict[str, torch.Tensor]:
    """input_ids (padded with `pad_id`), labels (IGNORE_INDEX on padding) and attention_mask."""
    width = max(len(e.input_ids) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE_INDEX)
    mask = torch.zeros_like(ids)
    for row, e in enumerate(encoded):
        n = len(e.input_ids)
        span = slice(width - n, width) if left else slice(0, n)
        ids[row, span] = torch.tensor(e.input_ids)
        labels[row, span] = torch.tensor(e.labels)
        mask[row, span] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def build_processor(model_cfg, model, tokenizer=None) -> MultimodalProcessor:
    """The processor for a built model (anything with `visual_input_spec()`) and its `model:` config."""
    return MultimodalProcessor.from_config(model_cfg, model.visual_input_spec(), tokenizer)
