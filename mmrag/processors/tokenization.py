"""Turn rendered conversation segments into input ids and loss labels, with image placeholders.

Each `<image>` in the text becomes `n_visual_tokens` copies of IMAGE_PLACEHOLDER_ID; the model
overwrites those positions with visual features (in order of appearance). Placeholders and every
non-target segment get label IGNORE_INDEX, so loss falls on answers (and their EOS) only.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple, Union
from mmrag.common.errors import DataFormatError

IGNORE_INDEX = -100
IMAGE_PLACEHOLDER_ID = -200  # never a vocabulary id; replaced by visual features in the model
CONTEXT_PLACEHOLDER_ID = -300  # `<context>` positions; replaced by the context module's tokens
SegmentText = Union[str, List[int]]  # a target may be given as token ids (e.g. a corpus span)


class ImageCountError(DataFormatError):
    pass


@dataclass
class EncodedSample:
    input_ids: List[int]
    labels: List[int]
    n_images: int


_MEMO_SIZE = 200_000  # texts remembered per tokenizer (a training set's prompts, questions and answers)
_MEMO: "weakref.WeakKeyDictionary[Any, Dict[str, Tuple[int, ...]]]" = weakref.WeakKeyDictionary()


def _text_ids(tokenizer, text: str) -> List[int]:
    """The text's ids without special tokens, remembered per tokenizer: a run encodes the same
    template pieces and questions every epoch, and a segment's ids do not depend on its neighbours."""
    if not text:
        return []
    try:
        memo = _MEMO.setdefault(tokenizer, {})
    except TypeError:  # an object without weak references: not remembered
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = memo.get(text)
    if ids is None:
        ids = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(memo) < _MEMO_SIZE:
            memo[text] = ids
    return list(ids)


def _context_ids(tokenizer, text: str, n_context_tokens: int, context_token: str) -> List[int]:
    if not n_context_tokens:
        return _text_ids(tokenizer, text)
    ids: List[int] = []
    for i, part in enumerate(text.split(context_token)):
        ids += ([CONTEXT_PLACEHOLDER_ID] * n_context_tokens if i else []) + _text_ids(tokenizer, part)
    return ids


def encode_segments(
    tokenizer,
    segments: Sequence[Tuple[SegmentText, bool]],
    n_visual_tokens: int,
    image_token: str = "<image>",
    eos_after_targets: bool = True,
    max_length: int = 0,
    add_bos: bool = True,
    n_context_tokens: int = 0,
    context_token: str = "<context>",
) -> EncodedSample:
    """Tokenise segments; `max_length` > 0 truncates from the end but never through an image.
    With `n_context_tokens` > 0 each `context_token` becomes that many CONTEXT_PLACEHOLDER_IDs."""
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
                piece += _context_ids(tokenizer, part, n_context_tokens, context_token)
        if is_target and eos_after_targets:
            piece.append(tokenizer.eos_token_id)
        ids += piece
        labels += [t if is_target and t >= 0 else IGNORE_INDEX for t in piece]  # placeholders never carry loss
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
