"""Answer matching rules and the similarity scorers (token F1, the real MiniLM, BERTScore)."""
from __future__ import annotations

import pytest

from mmrag.common.assets import minilm_dir
from mmrag.surf.tool_eval import (
    BertScoreScorer,
    MiniLMScorer,
    TokenF1Scorer,
    answer_type,
    build_similarity_scorer,
    is_correct,
    option_letter,
)


@pytest.mark.parametrize("text, letter", [("B", "B"), ("(B)", "B"), ("B. dog", "B"), ("B) dog", "B"),
                                          ("The answer is C.", "C"), ("I pick (A) here", "A"),
                                          ("I think it is a dog", None), ("dog", None)])
def test_option_letter(text, letter):
    assert option_letter(text) == letter


@pytest.mark.parametrize("pred, truth, ok", [("Red", "red", True), ("It is red.", "Red", True), ("reddish", "red", False),
                                             ("The dog", "dog", True), ("two dogs", "2", False), ("", "red", False),
                                             ("a red car", "red car", True), ("car red", "red car", False)])
def test_short_answer_match(pred, truth, ok):
    assert is_correct(pred, truth, "short") is ok


def test_answer_types():
    assert answer_type("Which one?\nA. cat\nB. dog", "B") == "mc"
    assert answer_type("Which letter comes first?", "B") == "short"  # no lettered options
    assert answer_type("What is it? Answer the question using a single word or phrase.", "a large red fire truck") == "short"
    assert answer_type("Describe it.", "A large red fire truck parked outside.") == "open"


def test_open_answers_have_no_exact_rule():
    with pytest.raises(ValueError, match="SimilarityScorer"):
        is_correct("x", "y", "open")


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
