"""The processor: everything between a sample on disk and the tensors the model reads.

Built from the same `model:` config section as the model plus what the built model reports about
its inputs (`VisualInputSpec`: how many LLM positions one image fills, the tower's image size and
normalisation). It holds the tokenizer, the conversation template and the image processor, and
collates samples {conversations, pixel_values [n,3,H,W], regions?, target_ids?, id?} into batches.
The model never tokenises; a caller that wants another prompt format passes another template.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from mmrag.processors.conversation import ConversationTemplate, get_template
from mmrag.processors.image_processing import ImageProcessor
from mmrag.processors.tokenization import IGNORE_INDEX, EncodedSample, check_image_count, encode_segments
from mmrag.processors.tokenizers import load_tokenizer


@dataclass(frozen=True)
class VisualInputSpec:
    """What a model reports about its image input (`MultimodalLLM.visual_input_spec()`)."""

    num_visual_tokens: int           # LLM positions one `<image>` becomes
    image_size: int                  # square side the tower reads, in pixels
    image_mean: Tuple[float, ...]    # per-channel normalisation of the tower, on 0..1 pixel values
    image_std: Tuple[float, ...]


class MultimodalProcessor:
    """Tokenizer + conversation template + image processor + collation, for one model config."""

    def __init__(self, tokenizer, template: ConversationTemplate, image_processor: ImageProcessor,
                 num_visual_tokens: int, image_token: str = "<image>", max_txt_len: int = 512) -> None:
        self.tokenizer, self.template, self.image_processor = tokenizer, template, image_processor
        self.num_visual_tokens, self.image_token, self.max_txt_len = num_visual_tokens, image_token, max_txt_len

    @classmethod
    def from_config(cls, model_cfg, spec: VisualInputSpec, tokenizer=None) -> "MultimodalProcessor":
        """From the `model:` section (llm tokenizer, conversation_template, image_token, max_txt_len,
        pad_to_square) and the built model's `spec`."""
        images = ImageProcessor(spec.image_size, spec.image_mean, spec.image_std, model_cfg.pad_to_square)
        return cls(tokenizer if tokenizer is not None else load_tokenizer(model_cfg.llm),
                   get_template(model_cfg.conversation_template), images, spec.num_visual_tokens,
                   model_cfg.image_token, model_cfg.max_txt_len)

    # ------------------------------------------------------------------ one sample
    def encode_conversation(self, turns: Sequence[Dict[str, str]], n_images: int, where: str = "sample",
                            generation: bool = False, target_ids: Optional[List[int]] = None,
                            template: Optional[ConversationTemplate] = None) -> EncodedSample:
        """Token ids and labels for one sample. `target_ids` replaces the last answer's text by ids."""
        template = template or self.template
        segments = template.segments(turns)
        if target_ids is not None:
            segments = segments[:-1] + [(list(target_ids), True)]
        encoded = encode_segments(
            self.tokenizer, segments, self.num_visual_tokens, self.image_token,
            eos_after_targets=template.eos_after_answer, max_length=0 if generation else self.max_txt_len,
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
                                     generation, s.get("target_ids"), template)
            for i, s in enumerate(samples)
        ]
        batch = pad_encoded(encoded, self.tokenizer.pad_token_id, left=generation)
        pixel = [s["pixel_values"] for s in samples if len(s["pixel_values"])]
        batch["pixel_values"] = torch.cat(pixel) if pixel else torch.zeros(0, 3, 1, 1)
        if any(s.get("regions") is not None for s in samples):
            batch["regions"] = torch.cat([s["regions"] for s in samples if len(s["pixel_values"])])
        return batch

    def decode(self, ids) -> List[str]:
        """Generated id rows -> texts, special tokens dropped."""
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)


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
