"""The RAG prompt builder used for training samples and inference."""
from __future__ import annotations

import pytest

from mmrag.surf.prompts import (
    RagConfig,
    build_rag_prompt,
    format_rag_prompt,
    reanswer_prompt,
)

RETRIEVED = [{"image": "db/a.jpg", "caption": "a cat on a sofa", "score": 0.7},
             {"image": "db/b.jpg", "caption": "a dog in a park ", "score": 0.9},
             {"image": "db/c.jpg", "caption": "two birds", "score": 0.3}]


def test_format_exact_text_and_image_order():
    rag = format_rag_prompt("<image>\nIs there a dog in the image?", "q.jpg", RETRIEVED[:2])
    assert rag.prompt == ("<Retrieval> 1. <image> a cat on a sofa\n2. <image> a dog in a park\n</Retrieval>\n"
                          "<image> Is there a dog in the image?")
    assert rag.images == ["db/a.jpg", "db/b.jpg", "q.jpg"]


def test_build_selects_top_k_by_score_above_threshold():
    rag = build_rag_prompt("Is there a dog?", "q.jpg", RETRIEVED, RagConfig(k=2, threshold=0.5))
    assert rag.images == ["db/b.jpg", "db/a.jpg", "q.jpg"]
    rag = build_rag_prompt("Is there a dog?", "q.jpg", RETRIEVED, RagConfig(k=3, threshold=0.8))
    assert rag.images == ["db/b.jpg", "q.jpg"] and rag.prompt.startswith("<Retrieval> 1. <image> a dog in a park\n</Retrieval>")


def test_nothing_above_threshold_gives_the_plain_prompt():
    rag = build_rag_prompt("Is there a dog?", "q.jpg", RETRIEVED, RagConfig(k=2, threshold=0.95))
    assert rag.prompt == "<image>\nIs there a dog?" and rag.images == ["q.jpg"]


def test_config_and_reanswer_prompt():
    assert RagConfig.from_dict({"k": 3}) == RagConfig(k=3, threshold=None)
    with pytest.raises(ValueError, match="unknown key 'topk'"):
        RagConfig.from_dict({"topk": 3})
    assert reanswer_prompt("<image>\nWhat is it?").count("<image>") == 2 and reanswer_prompt("x").endswith("question: x")
