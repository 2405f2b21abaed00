"""Prompts of retrieval-augmented answering (SURf): the RAG human turn and the re-answer prompt. The
retrieval-aware system prompt is the `vicuna_v1_retrieval` conversation template's. The same builder
makes training samples and inference prompts, so the model sees one format.

RAG human turn (retrieved images first, the query image last; one `<image>` per image, in order):

    <Retrieval> 1. <image> {caption 1}
    2. <image> {caption 2}
    </Retrieval>
    <image> {question}
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

IMAGE_TOKEN = "<image>"

# Re-answering with one retrieved item during data construction: retrieved image, then the test image.
REANSWER_TEMPLATE = (
    "Here is an image that resembles the test image:\n" + IMAGE_TOKEN + "\n"
    "Taking it into account, look at the test image:\n" + IMAGE_TOKEN + "\n"
    "and answer the question: {question}"
)


def strip_image_token(text: str) -> str:
    """A LLaVA human turn without its `<image>` placeholder(s) and the newline that follows them."""
    return re.sub(r"\s*<image>\s*", " ", text).strip()


@dataclass
class RagConfig:
    """How many retrieved items go into the prompt and the lowest similarity (cosine) that may."""

    k: int = 2
    threshold: Optional[float] = None

    @classmethod
    def from_dict(cls, cfg: Optional[Dict[str, Any]]) -> "RagConfig":
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - {"k", "threshold"})
        if unknown:
            raise ValueError(f"rag config: unknown key '{unknown[0]}' (valid: k, threshold)")
        return cls(**cfg)


@dataclass
class RagPrompt:
    """A human turn and its images in `<image>` order (retrieved ones first, query last)."""

    prompt: str
    images: List[str]
    retrieved: List[Dict[str, Any]] = field(default_factory=list)


def retrieved_item(hit: Any) -> Dict[str, Any]:
    """A retriever Hit as the {"id", "image", "caption", "score"} item that RAG prompts and SURf
    records hold (the image path absolute, as the retriever gives it)."""
    return {"id": hit.id, "image": hit.image, "caption": hit.text, "score": hit.score}


def select_retrieved(retrieved: Sequence[Dict[str, Any]], cfg: RagConfig) -> List[Dict[str, Any]]:
    """The best `cfg.k` items (by "score", highest first) with score >= `cfg.threshold`."""
    keep = [r for r in retrieved if cfg.threshold is None or r.get("score", 0.0) >= cfg.threshold]
    keep.sort(key=lambda r: -r.get("score", 0.0))
    return keep[: cfg.k]


def format_rag_prompt(question: str, query_image: str, items: Sequence[Dict[str, Any]]) -> RagPrompt:
    """The RAG human turn for `items` in the given order ({"image", "caption"}); no block when empty."""
    question = strip_image_token(question)
    if not items:
        return RagPrompt(f"{IMAGE_TOKEN}\n{question}", [str(query_image)], [])
    lines = [f"{n}. {IMAGE_TOKEN} {item.get('caption', '').strip()}" for n, item in enumerate(items, start=1)]
    prompt = "<Retrieval> " + "\n".join(lines) + f"\n</Retrieval>\n{IMAGE_TOKEN} {question}"
    return RagPrompt(prompt, [str(it["image"]) for it in items] + [str(query_image)], list(items))


def build_rag_prompt(question: str, query_image: str, retrieved: Sequence[Dict[str, Any]], cfg: Optional[RagConfig] = None) -> RagPrompt:
    """Inference-time RAG prompt: select by k / threshold, then format (best item first)."""
    return format_rag_prompt(question, query_image, select_retrieved(retrieved, cfg or RagConfig()))


def reanswer_prompt(question: str) -> str:
    """Data construction: the prompt that shows one retrieved image and then the test image."""
    return REANSWER_TEMPLATE.format(question=strip_image_token(question))
