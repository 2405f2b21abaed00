"""Clue -> passage scorers: first-hit, SEAL evidence aggregation (hand-computed), beam-score sum."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mmrag.common.registry import CLUE_SCORERS
from mmrag.retrieval.clue_scoring import (BeamScoreSumScorer, Clue, FirstHitScorer, SealScorer,
                                          make_clue_scorer)
from mmrag.retrieval.corpus_index import CorpusIndex

CORPUS = [[1, 2, 3, 4], [2, 3, 5], [6, 7, 1, 2], [3, 8, 9]]  # 14 tokens


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    fingerprint = {"name": "toy", "vocab_size": 10, "vocab_sha256": "toy"}
    return CorpusIndex.build_from_token_ids([f"p{i}" for i in range(4)], [np.array(p) for p in CORPUS],
                                            tmp_path_factory.mktemp("idx"), fingerprint)


def test_scorers_are_registered_by_name():
    assert CLUE_SCORERS.get("first_hit") is FirstHitScorer
    assert CLUE_SCORERS.get("seal") is SealScorer
    assert CLUE_SCORERS.get("beam_score_sum") is BeamScoreSumScorer
    assert isinstance(make_clue_scorer("seal", alpha=1.0), SealScorer)


def test_first_hit_takes_first_passage_per_clue_deduplicated(index):
    clues = [Clue((5,)), Clue((9, 9)), Clue((2, 3)), Clue((3,)), Clue((1, 2)), Clue((6,))]
    # (5,) -> p1; (9, 9) absent; (2, 3) -> p0; (3,) -> p0 again (skipped); (1, 2) -> p0 (skipped); (6,) -> p2
    assert [p.row for p in FirstHitScorer()(index, clues, k=10)] == [1, 0, 2]
    assert [p.row for p in FirstHitScorer()(index, clues, k=2)] == [1, 0]


def test_beam_score_sum_adds_clue_probabilities(index):
    clues = [Clue((2, 3), -0.3), Clue((1, 2), -0.1), Clue((2, 3), -5.0)]  # a repeated clue counts once
    ranked = BeamScoreSumScorer()(index, clues, k=5)
    assert [p.row for p in ranked] == [0, 2, 1]
    assert ranked[0].score == pytest.approx(math.exp(-0.3) + math.exp(-0.1))
    assert ranked[2].score == pytest.approx(math.exp(-0.3))


def test_seal_matches_hand_computed_example(index):
    n_tokens = 14

    def weight(logprob, count):  # alpha = 2, smoothing = 5
        p_q, p_n = math.exp(logprob), (count + 5) / (n_tokens + 5)
        return max(0.0, math.log(p_q * (1 - p_n)) - math.log(p_n * (1 - p_q))) ** 2

    clues = [Clue((2, 3), token_logprobs=(-0.1, -0.2)), Clue((1, 2), token_logprobs=(-0.05, -0.05)),
             Clue((7, 9), token_logprobs=(-0.01, -0.01))]  # (7, 9) never occurs: no evidence
    w23 = weight(-0.3, 2)  # (2,3) in p0 and p1
    w12 = weight(-0.1, 2)  # (1,2) in p0 and p2
    w3 = weight(-0.2, 3)  # token 3 in p0, p1, p3 (best log-prob -0.2)
    w7 = weight(-0.01, 1)  # token 7 in p2 (its clue (7, 9) does not occur, its tokens do)
    w9 = weight(-0.01, 1)  # token 9 in p3
    assert w12 > w23 > 0
    expected = {
        0: w12 + w23 * (1 - 0.8 + 0.8 * 1 / 2),  # (1,2) first; (2,3) then brings one new token of two
        1: w23,  # tokens 2 and 3 covered by (2,3): no unigram adds
        2: w12 + w7,  # token 7 is not covered by an n-gram: its unigram weight adds
        3: w3 + w9,  # unigrams only
    }
    ranked = SealScorer()(index, clues, k=4)
    assert [p.row for p in ranked] == sorted(expected, key=lambda r: -expected[r])
    for passage in ranked:
        assert passage.score == pytest.approx(expected[passage.row], rel=1e-9)
    evidence = SealScorer().evidence(index, clues)
    assert (7, 9) not in evidence and evidence[(2,)][1] == 3 and evidence[(3,)][0] == pytest.approx(w3)


def test_seal_two_stages_and_zero_weights(index):
    clues = [Clue((2, 3), token_logprobs=(-0.1, -0.2)), Clue((1, 2), token_logprobs=(-0.05, -0.05))]
    full = SealScorer()(index, clues, k=4)
    # only n-grams seen at most once pick candidates: none here, so frequent n-grams fill in
    few = SealScorer(candidate_max_count=1, n_candidates=2)(index, clues, k=4)
    assert len(few) == 2 and {p.row for p in few} <= {p.row for p in full}
    scores = {p.row: p.score for p in full}
    assert all(scores[p.row] == pytest.approx(p.score) for p in few)  # stage 2 scores with all evidence
    assert SealScorer().ngram_weight(math.log(0.01), 9, 14) == 0.0  # less likely than in the corpus
