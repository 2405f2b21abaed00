"""Knowledge-clue targets for GeMKR training: token spans of a question's gold passage.

GeMKR's released code has no sampler; following the paper and SEAL, a clue is a span of the gold
passage that identifies it. Start positions are word starts (so the span re-tokenises to itself)
and are drawn with probability softmax(score / temperature), where a span scores high when it is
RARE in the corpus (it holds an n-gram found in few places, so it points at few passages), when it
CONTAINS a gold answer (it leads to passages that state the answer) and when it OVERLAPS the
question's tokens. Deterministic for a given seed and question id.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np


@dataclass(frozen=True)
class ClueSamplerConfig:
    num_clues: int = 3          # clues per question (each a training sample)
    clue_len: int = 8           # tokens per clue (shorter at the passage end)
    rarity_ngram: int = 3       # n-gram size whose corpus count measures rarity
    answer_weight: float = 1.0
    overlap_weight: float = 1.0
    rarity_weight: float = 1.0
    temperature: float = 0.25
    seed: int = 0


def _rng(seed: int, key: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def word_starts(tokens: Sequence[int], is_word_start: np.ndarray) -> np.ndarray:
    """Positions whose token begins a word (SentencePiece '▁' pieces)."""
    tokens = np.asarray(tokens)
    return np.flatnonzero(is_word_start[tokens]) if len(tokens) else np.zeros(0, dtype=np.int64)


def rarity_scores(index, tokens: np.ndarray, starts: np.ndarray, cfg: ClueSamplerConfig) -> np.ndarray:
    """1 / log2(1 + count of the span's RAREST n-gram) per start, in (0, 1]: a span holding an
    n-gram found in few places (an entity name, a specific fact) points at few passages; template
    phrasing ('one of the best documented') occurs everywhere."""
    n = cfg.rarity_ngram
    counts = np.array([index.count(tokens[i:i + n].tolist()) for i in range(max(1, len(tokens) - n + 1))])
    first = np.minimum(starts, len(counts) - 1)  # spans shorter than n at the passage end
    best = [counts[f:max(f + 1, s + cfg.clue_len - n + 1)].min() for f, s in zip(first, starts)]
    return 1.0 / np.log2(1 + np.maximum(best, 1))


def answer_scores(tokens: np.ndarray, starts: np.ndarray, answers: Sequence[Sequence[int]], clue_len: int) -> np.ndarray:
    """1 where the span contains a whole answer (as tokens), else 0: such a clue leads to passages
    that state the answer, which is what makes a retrieved passage relevant."""
    out = np.zeros(len(starts))
    for i, s in enumerate(starts):
        span = tokens[s:s + clue_len].tolist()
        out[i] = any(a and any(span[j:j + len(a)] == list(a) for j in range(len(span) - len(a) + 1)) for a in answers)
    return out


def overlap_scores(tokens: np.ndarray, starts: np.ndarray, question: set, clue_len: int) -> np.ndarray:
    """Share of a span's tokens that also occur in the question, per start."""
    return np.array([len(set(tokens[s:s + clue_len].tolist()) & question) / max(1, len(tokens[s:s + clue_len]))
                     for s in starts])


def sample_clues(index, passage_tokens: np.ndarray, question_tokens: Sequence[int], key: str,
                 is_word_start: np.ndarray, cfg: ClueSamplerConfig, rarity: np.ndarray = None,
                 answers: Sequence[Sequence[int]] = ()) -> List[List[int]]:
    """Up to `cfg.num_clues` distinct clue spans (token id lists) from one gold passage.

    `rarity` (from `rarity_scores`, per word start of this passage) may be passed in to reuse it
    across the many questions that share a gold passage; `answers` are the gold answers as tokens.
    """
    tokens = np.asarray(passage_tokens, dtype=np.int64)
    starts = word_starts(tokens, is_word_start)
    if len(starts) == 0:
        return []
    if rarity is None:
        rarity = rarity_scores(index, tokens, starts, cfg)
    overlap = overlap_scores(tokens, starts, set(int(t) for t in question_tokens), cfg.clue_len)
    scores = (cfg.rarity_weight * rarity + cfg.overlap_weight * overlap
              + cfg.answer_weight * answer_scores(tokens, starts, answers, cfg.clue_len))
    logits = (scores - scores.max()) / cfg.temperature
    p = np.exp(logits) / np.exp(logits).sum()
    n = min(cfg.num_clues, len(starts))
    chosen = _rng(cfg.seed, key).choice(len(starts), size=n, replace=False, p=p)
    return [tokens[starts[c]:starts[c] + cfg.clue_len].tolist() for c in chosen]


def word_start_table(tokenizer) -> np.ndarray:
    """Boolean per vocabulary id: does this piece start a word? SentencePiece (LLaMA) marks a leading
    space with '▁', byte-level BPE (GPT-2, SmolLM2) with 'Ġ'."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return np.array([bool(v) and v.startswith(("▁", "Ġ")) for v in vocab] + [False])
