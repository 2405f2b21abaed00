"""The dense dual-encoder baseline: trained on questions that name a keyword of their gold passage
(every image identical, so only the text can tell them apart), it ranks each test question's gold
passage first; hits are passages with their texts; two runs give the same ranking (seeded)."""
from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from transformers import AutoTokenizer

import mmrag  # noqa: F401
from mmrag.common.assets import llama_tokenizer_dir
from mmrag.common.registry import VISION_TOWERS
from mmrag.retrieval.corpus_index import CorpusIndex
from mmrag.retrievers.base import Query, build_retriever
from tests.conftest import TINY_TOWER

PASSAGES = ["The zebra lives on the savanna.", "Bananas are yellow fruit.",
            "A lighthouse guides ships at night.", "Violins have four strings."]
KEYWORDS = [["zebra", "savanna"], ["banana", "fruit"], ["lighthouse", "ships"], ["violin", "strings"]]
TEMPLATES = ["Where does the {} appear?", "Tell me about the {}.", "What is known of {}?"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense")
    Image.new("RGB", (32, 32), (120, 120, 120)).save(root / "same.jpg")
    train = [{"question_id": f"t{p}{i}{j}", "input": t.format(w), "output": ["x"], "image": "same",
              "gold_passage_ids": [f"p{p}"]}
             for p, words in enumerate(KEYWORDS) for i, w in enumerate(words) for j, t in enumerate(TEMPLATES)]
    (root / "train.json").write_text(json.dumps(train))
    tokenizer = AutoTokenizer.from_pretrained(str(llama_tokenizer_dir()))
    index = CorpusIndex.build([(f"p{i}", t) for i, t in enumerate(PASSAGES)], tokenizer, root / "corpus", progress=False)
    cfg = OmegaConf.create({
        "evaluation": {"dense": {"steps": 120, "batch_size": 8, "lr": 1e-2, "dim": 32}},
        "model": {"vision_tower": {**VISION_TOWERS.get("hf_clip").default_config(), "config": dict(TINY_TOWER),
                                   "select_layer": -1}, "pad_to_square": False},
        "run": {"seed": 0, "device": "cpu"}})
    ds_cfg = OmegaConf.create({"data_path": str(root / "{split}.json"), "image_root": str(root), "image_ext": ".jpg"})
    return cfg, tokenizer, index, ds_cfg, root


def test_gold_passage_first_and_seeded(setup):
    cfg, tokenizer, index, ds_cfg, root = setup
    image = str(root / "same.jpg")
    queries = [Query(f"q{p}", f"Anything about the {words[0]}?", image) for p, words in enumerate(KEYWORDS)]
    torch.manual_seed(1)  # the tiny tower is random-initialised (a real config loads it from a path)
    hits = build_retriever("dense", cfg, tokenizer=tokenizer, index=index, ds_cfg=ds_cfg).retrieve(queries, k=2)
    assert [h[0].id for h in hits] == ["p0", "p1", "p2", "p3"]
    assert all(len(h) == 2 and h[0].score >= h[1].score and h[0].text == PASSAGES[int(h[0].id[1:])] for h in hits)
    torch.manual_seed(1)
    again = build_retriever("dense", cfg, tokenizer=tokenizer, index=index, ds_cfg=ds_cfg).retrieve(queries, k=2)
    assert [[(x.id, x.score) for x in h] for h in again] == [[(x.id, x.score) for x in h] for h in hits]
