"""Map decoded knowledge clues to ranked passages. Pick a scorer by name from CLUE_SCORERS:

- `first_hit`: GeMKR's mapping. For each clue in decoding order, the first passage (lowest corpus row)
  that contains it; passages already taken are skipped; at most k. No aggregation across clues.
- `seal`: SEAL's evidence aggregation. Each n-gram gets a weight from how much likelier the model
  made it than the corpus does; a passage sums the weights of the n-grams it contains, greedily,
  discounting n-grams whose tokens are already covered; candidates come from the rare n-grams first.
- `beam_score_sum`: a passage scores the summed probability (exp of the log-prob) of every clue it
  contains.

A scorer is called as `scorer(index, clues, k) -> [ScoredPassage]`, best first, where `index` is a
CorpusIndex or ShardedCorpusIndex.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from mmrag.common.registry import CLUE_SCORERS

NGram = Tuple[int, ...]


@dataclass(frozen=True)
class Clue:
    """A decoded clue. `score`: the decoder's ranking score (log-prob, possibly length-normalised);
    `token_logprobs`: natural-log probability of each clue token, when the decoder recorded them."""

    tokens: NGram
    score: float = 0.0
    token_logprobs: Optional[Tuple[float, ...]] = None

    @property
    def logprob(self) -> float:
        """Unnormalised log-probability of the clue's tokens (falls back to `score`)."""
        return float(sum(self.token_logprobs)) if self.token_logprobs is not None else self.score


@dataclass(frozen=True)
class ScoredPassage:
    row: int
    score: float


def make_clue_scorer(name: str, **options):
    """Instantiate the scorer registered as `name` (UnknownNameError naming the known ones otherwise)."""
    return CLUE_SCORERS.get(name)(**options)


@CLUE_SCORERS.register("first_hit")
class FirstHitScorer:
    """Reference (GeMKR) mapping: the first passage containing each clue, de-duplicated in clue order."""

    def __call__(self, index, clues: Sequence[Clue], k: int) -> List[ScoredPassage]:
        out: List[ScoredPassage] = []
        seen = set()
        for clue in clues:
            rows = index.passages(clue.tokens, limit=1) if clue.tokens else []
            if len(rows) and int(rows[0]) not in seen:
                seen.add(int(rows[0]))
                out.append(ScoredPassage(int(rows[0]), clue.score))
            if len(out) == k:
                break
        return out


@CLUE_SCORERS.register("beam_score_sum")
class BeamScoreSumScorer:
    """Sum of exp(clue log-prob) over the clues a passage contains (first `locate_limit` passages per clue)."""

    def __init__(self, locate_limit: int = 100) -> None:
        self.locate_limit = locate_limit

    def __call__(self, index, clues: Sequence[Clue], k: int) -> List[ScoredPassage]:
        totals: Dict[int, float] = {}
        for clue in _distinct(clues):
            for row in index.passages(clue.tokens, limit=self.locate_limit).tolist():
                totals[row] = totals.get(row, 0.0) + math.exp(clue.logprob)
        return _top(totals, k)


@CLUE_SCORERS.register("seal")
class SealScorer:
    """SEAL evidence aggregation (Bevilacqua et al. 2022), re-derived from the paper's formulas.

    weight(n) = max(0, log[P(n|q)(1 - P(n))] - log[P(n)(1 - P(n|q))]) ** alpha, with
    P(n|q) = exp(clue log-prob) and P(n) = (count(n) + smoothing) / (corpus tokens + smoothing).
    Evidence: every distinct clue, plus every clue token as a unigram when the clue carries
    per-token log-probs (a token's best log-prob is its P(t|q)).
    passage score = sum over contained n-grams of length >= 2, by decreasing weight, of
    weight * (1 - beta + beta * new / len(n)) where `new` counts the n-gram's tokens not covered by
    earlier n-grams, plus the weight of every contained unigram whose token is still uncovered.
    Two stages: n-grams seen at most `candidate_max_count` times locate the candidates (ranked by
    their partial score); the best `n_candidates` are scored with all evidence.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 0.8, smoothing: float = 5.0,
                 candidate_max_count: int = 1500, n_candidates: int = 1500) -> None:
        self.alpha, self.beta, self.smoothing = alpha, beta, smoothing
        self.candidate_max_count, self.n_candidates = candidate_max_count, n_candidates

    def ngram_weight(self, logprob: float, count: int, corpus_tokens: int) -> float:
        """Weight of an n-gram the model generated with `logprob` that occurs `count` times."""
        p_query = min(max(math.exp(logprob), 1e-12), 1.0 - 1e-12)
        p_corpus = (count + self.smoothing) / (corpus_tokens + self.smoothing)
        gain = math.log(p_query * (1.0 - p_corpus)) - math.log(p_corpus * (1.0 - p_query))
        return max(0.0, gain) ** self.alpha

    def evidence(self, index, clues: Sequence[Clue]) -> Dict[NGram, Tuple[float, int]]:
        """{n-gram: (weight, corpus count)} for every n-gram that occurs and has a positive weight."""
        best: Dict[NGram, float] = {}
        for clue in clues:
            if clue.tokens:
                best[clue.tokens] = max(best.get(clue.tokens, -math.inf), clue.logprob)
            for token, lp in zip(clue.tokens, clue.token_logprobs or ()):
                best[(token,)] = max(best.get((token,), -math.inf), lp)
        out = {}
        for ngram, logprob in best.items():
            count = index.count(ngram)
            weight = self.ngram_weight(logprob, count, index.n_tokens) if count else 0.0
            if weight > 0:
                out[ngram] = (weight, count)
        return out

    def aggregate(self, matched: Dict[NGram, float]) -> float:
        """Score of a passage that contains the n-grams `matched` ({n-gram: weight})."""
        longer = sorted((n for n in matched if len(n) > 1), key=lambda n: (-matched[n], -len(n), n))
        covered: set = set()
        total = 0.0
        for ngram in longer:
            new = sum(1 for token in ngram if token not in covered)
            total += matched[ngram] * (1.0 - self.beta + self.beta * new / len(ngram))
            covered.update(ngram)
        return total + sum(w for n, w in matched.items() if len(n) == 1 and n[0] not in covered)

    def __call__(self, index, clues: Sequence[Clue], k: int) -> List[ScoredPassage]:
        evidence = self.evidence(index, clues)
        found: Dict[int, Dict[NGram, float]] = {}
        by_weight = sorted(evidence, key=lambda n: (-evidence[n][0], n))
        rare = [n for n in by_weight if evidence[n][1] <= self.candidate_max_count]
        for ngram in rare:
            for row in index.passages(ngram, limit=evidence[ngram][1]).tolist():
                found.setdefault(row, {})[ngram] = evidence[ngram][0]
        for ngram in (n for n in by_weight if n not in rare):  # too few candidates: frequent n-grams too
            if len(found) >= max(k, 1):
                break
            for row in index.passages(ngram, limit=self.n_candidates - len(found)).tolist():
                found.setdefault(row, {})
        partial = {row: self.aggregate(m) for row, m in found.items()}
        candidates = [s.row for s in _top(partial, self.n_candidates)]
        frequent = [n for n in by_weight if evidence[n][1] > self.candidate_max_count]
        scores = {}
        for row in candidates:
            text = _token_bytes(index.passage_tokens(row))
            matched = dict(found[row])
            matched.update({n: evidence[n][0] for n in frequent if _contains(text, _token_bytes(n))})
            scores[row] = self.aggregate(matched)
        return _top(scores, k)


def _token_bytes(tokens) -> bytes:
    return np.asarray(tokens, dtype="<i4").tobytes()


def _contains(haystack: bytes, needle: bytes) -> bool:
    """Token-aligned substring test on 4-byte token codes."""
    start = haystack.find(needle)
    while start != -1:
        if start % 4 == 0:
            return True
        start = haystack.find(needle, start + 1)
    return False


def _distinct(clues: Sequence[Clue]) -> List[Clue]:
    """Clues with distinct non-empty token sequences, keeping each one's first occurrence."""
    seen, out = set(), []
    for clue in clues:
        if clue.tokens and clue.tokens not in seen:
            seen.add(clue.tokens)
            out.append(clue)
    return out


def _top(scores: Dict[int, float], k: int) -> List[ScoredPassage]:
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
    return [ScoredPassage(row, score) for row, score in ranked]
