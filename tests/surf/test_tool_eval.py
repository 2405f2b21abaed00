"""The similarity scorers (token F1, the real MiniLM, BERTScore)."""
from __future__ import annotations

import pytest

from mmrag.common.assets import minilm_dir
from mmrag.surf.tool_eval import (
    BertScoreScorer,
    MiniLMScorer,
    TokenF1Scorer,
    build_similarity_scorer,
)


def test_token_f1():
    assert TokenF1Scorer().score(["the red car", "blue", ""], ["a red car", "red car", ""]) == [1.0, 0.0, 1.0]
    assert TokenF1Scorer().score(["red car parked"], ["red car"])[0] == pytest.approx(0.8)


@pytest.fixture(scope="module")
def minilm():
    return MiniLMScorer(minilm_dir())


def test_minilm_ranks_a_paraphrase_above_an_unrelated_sentence(minilm):
    ref = "A red car is parked next to a tree."
    para, other, same = minilm.score(["There is a red automobile parked beside a tree.", "I like jazz music.", ref], [ref] * 3)
    assert same == pytest.approx(1.0, abs=1e-5) and para > other + 0.3


def test_bertscore_with_a_local_encoder():
    scorer = BertScoreScorer(minilm_dir())
    ref = "A red car is parked next to a tree."
    same, para, other = scorer.score([ref, "A red automobile stands beside a tree.", "I like jazz music."], [ref] * 3)
    assert same == pytest.approx(1.0, abs=1e-5) and same > para > other


def test_scorer_choice_is_recorded_and_a_missing_bertscore_path_is_named(tmp_path):
    assert build_similarity_scorer().name == "minilm"
    assert build_similarity_scorer({"use_minilm": False}).name == "token_f1"
    assert build_similarity_scorer({"bertscore_model": str(minilm_dir())}).name == "bertscore"
    with pytest.raises(FileNotFoundError, match="'bertscore_model' = .*nowhere"):
        build_similarity_scorer({"bertscore_model": str(tmp_path / "nowhere")})
