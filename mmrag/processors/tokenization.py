"""Turn rendered conversation segments into input ids and loss labels, with image placeholders.

Each `<image>` in the text becomes `n_visual_tokens` copies of IMAGE_PLACEHOLDER_ID; the model
overwrites those positions with visual features (in order of appearance). Placeholders and every
non-target segment get label IGNORE_INDEX, so loss falls on answers (and their EOS) only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union
from mmrag.common.errors import DataFormatError

IGNORE_INDEX = -100
IMAGE_PLACEHOLDER_ID = -200  # never a vocabulary id; replaced by visual features in the model
SegmentText = Union[str, List[int]]  # a target may be given as token ids (e.g. a corpus span)


class ImageCountError(DataFormatError):
    pass


@dataclass
class EncodedSample:
    input_ids: List[int]
    labels: List[int]
    n_images: int


def _text_ids(tokenizer, text: str) -> List[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def encode_segments(
    tokenizer,
    segments: Sequence[Tuple[SegmentText, bool]],
    n_visual_tokens: int,
    image_token: str = "<image>",
    eos_after_targets: bool = True,
    max_length: int = 0,
    add_bos: bool = True,
) -> EncodedSample:
    """Tokenise segments; `max_length` > 0 truncates from the end but never through an image."""
    ids: List[int] = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    labels: List[int] = [IGNORE_INDEX] * len(ids)
    n_images = 0
    for text, is_target in segments:
        if isinstance(text, list):
            piece = list(text)
        else:
            parts = text.split(image_token)
            piece = []
            for i, part in enumerate(parts):
                if i > 0:
                    piece += [IMAGE_PLACEHOLDER_ID] * n_visual_tokens
                    n_images += 1
                piece += _text_ids(tokenizer, part)
        if is_target and eos_after_targets:
            piece.append(tokenizer.eos_token_id)
        ids += piece
        labels += [t if is_target and t != IMAGE_PLACEHOLDER_ID else IGNORE_INDEX for t in piece]
    if max_length and len(ids) > max_length:
        if IMAGE_PLACEHOLDER_ID in ids[max_length:]:
            raise ImageCountError(
                f"sample is {len(ids)} tokens; truncating to max_length={max_length} would cut an image"
            )
        ids, labels = ids[:max_length], labels[:max_length]
    return EncodedSample(ids, labels, n_images)


def check_image_count(encoded: EncodedSample, n_given: int, where: str) -> None:
    if encoded.n_images != n_given:
        raise ImageCountError(
            f"{where}: the text has {encoded.n_images} '<image>' placeholder(s) but {n_given} image(s) were given"
        )
