"""The dense dual-encoder baseline for knowledge retrieval: (image + question) -> passage.

Query = MLP([frozen vision tower CLS ; mean of trainable token embeddings of the question]);
passage = MLP(mean of token embeddings of the passage). Trained with in-batch-negative InfoNCE on
(question, gold passage) pairs for the configured steps x batch (set equal to GeMKR's budget),
then every passage is searched exactly (inner product, torch on the CPU in fp32: the results of
faiss `Flat`, with no faiss needed, which the GPU machine lacks).
"""
from __future__ import annotations

from typing import Any, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from tqdm import tqdm

from mmrag.common.registry import RETRIEVERS
from mmrag.retrieval.exact_search import TorchExactIndex
from mmrag.retrievers.base import Hits, Query, check_exclude, drop_self
from mmrag.retrievers.knowledge import knowledge_queries, passage_hit


class BagOfTokens(nn.Module):
    def __init__(self, vocab: int, dim: int, extra_in: int = 0) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab, dim, mode="mean")
        self.head = nn.Sequential(nn.Linear(dim + extra_in, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, extra: torch.Tensor = None) -> torch.Tensor:
        x = self.embed(ids, offsets)
        if extra is not None:
            x = torch.cat([x, extra], dim=-1)
        return F.normalize(self.head(x), dim=-1)


def _bag(token_lists: Sequence[Sequence[int]]):
    ids = torch.tensor([t for toks in token_lists for t in (toks or [0])], dtype=torch.long)
    lengths = torch.tensor([max(1, len(t)) for t in token_lists])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    return ids, offsets


@torch.no_grad()
def image_features(cfg, paths: List[str], batch_size: int = 64) -> torch.Tensor:
    """CLS features of the last block of the (frozen) vision tower the generative model uses."""
    from mmrag.processors import ImageProcessor
    from mmrag.models.vision_tower import build_vision_tower

    tower = build_vision_tower(OmegaConf.to_container(cfg.model.vision_tower, resolve=True)).eval()
    device = "cuda" if torch.cuda.is_available() and cfg.run.device != "cpu" else "cpu"
    tower = tower.to(device)
    proc = ImageProcessor(tower.image_size, tower.image_mean, tower.image_std, cfg.model.pad_to_square)
    cache = {}  # many questions share an image
    for p in tqdm(sorted(set(paths)), desc="dense: image features"):
        cache[p] = proc(p)
    unique = sorted(cache)
    feats = [tower.hidden_states(torch.stack([cache[p] for p in unique[i:i + batch_size]]).to(device))[-1][:, 0].float().cpu()
             for i in range(0, len(unique), batch_size)]
    row = {p: i for i, p in enumerate(unique)}
    return torch.cat(feats)[[row[p] for p in paths]]


def _train(query_enc, passage_enc, q_tokens, img, p_tokens, pairs, opts) -> List[float]:
    params = list(query_enc.parameters()) + list(passage_enc.parameters())
    optim = torch.optim.AdamW(params, lr=opts.lr)
    rng = np.random.default_rng(0)
    losses = []
    for _ in tqdm(range(opts.steps), desc="dense: train"):
        batch = [pairs[i] for i in rng.choice(len(pairs), size=min(opts.batch_size, len(pairs)), replace=False)]
        qs = query_enc(*_bag([q_tokens[q] for q, _ in batch]), img[[q for q, _ in batch]])
        ps = passage_enc(*_bag([p_tokens[p] for _, p in batch]))
        logits = qs @ ps.T / 0.05
        same = torch.tensor([[p1 == p2 for _, p2 in batch] for _, p1 in batch], dtype=torch.float32)
        loss = -(F.log_softmax(logits, -1) * same / same.sum(-1, keepdim=True)).sum(-1).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(float(loss))
    return losses


@RETRIEVERS.register("dense")
class DenseBaselineRetriever:
    """Trains the dual encoder on the train split at the first `retrieve` call (so the evaluation's
    timing includes training, as GeMKR's includes decoding), then searches passages exactly.
    `cfg` is the experiment config: `evaluation.dense` (steps, batch_size, lr, dim), `model`
    (vision tower, LLM tokenizer), `run.seed`, `run.device`."""

    def __init__(self, cfg, tokenizer, index, ds_cfg) -> None:
        self.cfg, self.tokenizer, self.index, self.ds_cfg = cfg, tokenizer, index, ds_cfg

    @classmethod
    def from_config(cls, cfg, *, tokenizer, index, ds_cfg, **_: Any) -> "DenseBaselineRetriever":
        return cls(cfg, tokenizer, index, ds_cfg)

    def retrieve(self, queries: Sequence[Query], k: int, exclude: str = "self") -> List[Hits]:
        from mmrag.datasets.knowledge import read_split_questions

        check_exclude(exclude)
        cfg, index, tok, opts = self.cfg, self.index, self.tokenizer, self.cfg.evaluation.dense
        train = [q for q in read_split_questions(self.ds_cfg, "train") if q.get("gold_passage_ids")]
        train_q, gold = knowledge_queries(train, self.ds_cfg), [q["gold_passage_ids"] for q in train]
        row_of = {index.passage_id(r): r for r in range(index.n_passages)}
        p_tokens = [index.passage_tokens(r).tolist() for r in range(index.n_passages)]
        all_q = train_q + list(queries)
        q_tokens = [tok(q.text, add_special_tokens=False)["input_ids"] for q in all_q]
        img = image_features(cfg, [q.image for q in all_q])
        torch.manual_seed(cfg.run.seed)
        query_enc = BagOfTokens(len(tok) + 1, opts.dim, extra_in=img.shape[1])
        passage_enc = BagOfTokens(len(tok) + 1, opts.dim)
        pairs = [(i, row_of[str(pid)]) for i, pids in enumerate(gold) for pid in pids]
        _train(query_enc, passage_enc, q_tokens, img, p_tokens, pairs, opts)
        with torch.no_grad():
            passages = torch.cat([passage_enc(*_bag(p_tokens[i:i + 512])) for i in range(0, len(p_tokens), 512)])
            test = range(len(train_q), len(all_q))
            vectors = query_enc(*_bag([q_tokens[i] for i in test]), img[list(test)])
        exact = TorchExactIndex(passages.numpy().astype(np.float32), devices=["cpu"], dtype="float32")
        scores, rows = exact.search(vectors.numpy().astype(np.float32), min(k, len(p_tokens)))
        return [Hits(drop_self([passage_hit(index, int(r), float(s)) for r, s in zip(rr, ss)], q, exclude))
                for q, rr, ss in zip(queries, rows, scores)]
