"""GAVIE: the judge prompt, the reply parser on hand-written good and malformed replies, summaries, judges."""
from __future__ import annotations

import json
import math

import pytest

from mmrag.common.chat_client import ChatResult, EndpointConfig, OpenAIChatClient
from mmrag.common.registry import SCORERS
from mmrag.metrics.gavie import (GavieScorer, JudgeScore, LLMJudge, OracleJudge, judge_messages, parse_judge_reply,
                                 summarize)
from tests.helpers.chat_stub import ChatStub
from tests.metrics.test_gavie_oracle import SCENE, VOCAB

GOOD = """Answer 1
Relevancy: 8
Reason: It answers the question.
Accuracy: 6
Reason: The colour is wrong."""

GOOD_TWO = """Answer 1
Relevancy: 9
Reason: on topic
Accuracy: 3
Reason: invents a cloud

Answer 2
Relevancy: 2/10
Reason: talks about something else
Accuracy: 10 out of 10
Reason: all true"""


@pytest.mark.parametrize("reply, expected", [
    (GOOD, (8, 6, "It answers the question.", "The colour is wrong.")),
    # no header for a single answer, markdown bold, "score", decimals, trailing prose after the number
    ("**Relevancy score:** 7.5. The answer follows the instruction.\n**Accuracy**: 4 - two errors",
     (7.5, 4, "", "")),
    ("Relevance = 10\nAccuracy: 0/10\nReason: nothing matches", (10, 0, "", "nothing matches")),
    # the same score given twice with the same value is fine
    ("Relevancy: 5\nAccuracy: 5\nAccuracy: 5", (5, 5, "", "")),
])
def test_good_single_replies(reply, expected):
    [score] = parse_judge_reply(reply, 1)
    assert score.failure is None
    assert (score.relevancy, score.accuracy, score.relevancy_reason, score.accuracy_reason) == expected


def test_good_reply_with_two_answers():
    first, second = parse_judge_reply(GOOD_TWO, 2)
    assert (first.relevancy, first.accuracy, first.accuracy_reason) == (9, 3, "invents a cloud")
    assert (second.relevancy, second.accuracy, second.relevancy_reason) == (2, 10, "talks about something else")


@pytest.mark.parametrize("reply, cause", [
    ("", "empty reply"),
    (None, "empty reply"),
    ("The answer is pretty good overall, I would give it an 8.", "no relevancy and no accuracy score"),
    ("Relevancy: 8\nReason: fine", "no accuracy score"),
    ("Relevancy: 11\nAccuracy: 5", "relevancy 11 is outside 0-10"),
    ("Relevancy: 7\nAccuracy: -1", "accuracy -1 is outside 0-10"),
    ("Relevancy: 80\nAccuracy: 70", "relevancy 80 is outside 0-10"),
    ("Relevancy: 7 or 8\nAccuracy: 5", "relevancy is ambiguous"),
    ("Relevancy: high\nAccuracy: 5", "relevancy is not a number"),
    ("Relevancy: around 7\nAccuracy: 5", "relevancy is not a number"),
    ("Relevancy: 6\nAccuracy: 5\nAccuracy: 9", "two different accuracy scores"),
])
def test_malformed_single_replies_are_failures_never_zero(reply, cause):
    [score] = parse_judge_reply(reply, 1)
    assert score.relevancy is None and score.accuracy is None
    assert score.failure_kind == "parse" and score.failure.startswith(cause), score.failure


def test_malformed_multi_answer_replies():
    # answer 2 missing: answer 1 still counts
    first, second = parse_judge_reply(GOOD_TWO.split("Answer 2")[0], 2)
    assert first.accuracy == 3 and second.failure == "no block for answer 2"
    # no headers at all for two answers: both fail
    assert all(s.failure for s in parse_judge_reply("Relevancy: 5\nAccuracy: 5", 2))
    # an answer graded twice is ambiguous
    assert all(s.failure == "answer 1 graded twice" for s in parse_judge_reply(GOOD + "\n" + GOOD, 2))


def test_prompt_holds_annotations_instruction_and_numbered_answers():
    messages = judge_messages("a tree X: 1 Y: 2 Width: 3 Height: 4", "Describe it.", ["A tree.", "  two\nlines "])
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "a tree X: 1 Y: 2 Width: 3 Height: 4" in user and "Describe it." in user
    assert "Answer 1: A tree." in user and "Answer 2: two lines" in user
    assert "Relevancy" in user and "Accuracy" in user and "0 to 10" in user


def test_summarize_means_rates_and_named_failures():
    scores = [JudgeScore(10, 8), JudgeScore(6, 4), JudgeScore.failed("no accuracy score"),
              JudgeScore.failed("judge error: HTTP 500", "judge_error"), JudgeScore(2, None)]
    out = summarize(scores, names=["a", "b", "c", "d", "e"])
    assert out["num"] == 5
    assert out["relevancy"]["mean"] == pytest.approx(6.0) and out["relevancy"]["n"] == 3     # (10+6+2)/3
    assert out["accuracy"]["mean"] == pytest.approx(6.0) and out["accuracy"]["n"] == 2       # (8+4)/2
    assert out["accuracy"]["low"] <= 6.0 <= out["accuracy"]["high"]
    assert out["parse_failure_rate"] == pytest.approx(0.2) and out["judge_error_rate"] == pytest.approx(0.2)
    assert out["accuracy_unscored"] == 1
    assert out["failures"] == ["c: no accuracy score", "d: judge error: HTTP 500"]


def test_summarize_with_nothing_parsed():
    out = summarize([JudgeScore.failed("empty reply")] * 3)
    assert out["accuracy"]["mean"] is None and out["parse_failure_rate"] == 1.0


class ScriptedBackend:
    """A ChatBackend that returns fixed replies and records the conversations it got."""

    def __init__(self, replies):
        self.replies, self.seen = list(replies), []

    def complete(self, conversations, max_tokens=256, temperature=0.0):
        self.seen += list(conversations)
        return [r if isinstance(r, ChatResult) else ChatResult(text=r, error=None)
                for r in self.replies[:len(conversations)]]


def items(n=3):
    return [{"question_id": f"q{i}", "question": "Describe the image in detail.", "annotations": "a tree X: 1 Y: 1 "
             "Width: 5 Height: 5", "scene": SCENE} for i in range(n)]


def test_llm_judge_parses_and_counts_backend_errors():
    backend = ScriptedBackend([GOOD, "Relevancy: 9", ChatResult(text=None, error="HTTP 429 (gave up after 6 attempts)")])
    judge = LLMJudge(backend, max_tokens=50)
    grades = [g[0] for g in judge.judge(items(), [["a"], ["b"], ["c"]])]
    assert (grades[0].relevancy, grades[0].accuracy) == (8, 6)
    assert grades[1].failure_kind == "parse" and grades[2].failure_kind == "judge_error"
    assert "HTTP 429" in grades[2].failure
    assert backend.seen[0][1]["content"].count("Answer 1: a") == 1


def test_llm_judge_over_http_with_the_stub(tmp_path):
    with ChatStub(reply=lambda body: GOOD) as stub:
        client = OpenAIChatClient(EndpointConfig(url=stub.url, model="judge", cache_dir=str(tmp_path), backoff_s=0.0))
        stub.script(judge_messages(items(1)[0]["annotations"], "Describe the image in detail.", ["x"])[1]["content"],
                    [500])
        scorer = GavieScorer(LLMJudge(client))
        scores, metrics = scorer.score(["x", "y"], items(2))
        assert scores == [6, 6] and metrics["accuracy"]["mean"] == 6 and metrics["parse_failure_rate"] == 0
        assert metrics["judge"] == "llm" and metrics["accuracy_fraction"] == pytest.approx(0.6)
        assert len(stub.requests) == 3                      # one retry after the 500
        GavieScorer(LLMJudge(client)).score(["x", "y"], items(2))
        assert len(stub.requests) == 3                      # the rerun is served by the cache


def test_oracle_scorer_is_registered_and_reads_the_vocabulary_file(tmp_path):
    path = tmp_path / "vocabulary.json"
    path.write_text(json.dumps(VOCAB))
    its = [dict(it, vocabulary=str(path)) for it in items(2)]
    scorer = SCORERS.get("gavie")()
    scores, metrics = scorer.score(["There is a purple creature and three trees.", "I am not sure."], its)
    assert scores == [0.0, None]                              # hand-worked in test_gavie_oracle
    assert metrics["judge"] == "oracle" and metrics["accuracy_unscored"] == 1 and metrics["parse_failures"] == 0
    assert math.isclose(metrics["relevancy"]["mean"], 5.0)    # (10 + 0) / 2


def test_oracle_judge_needs_scene_and_vocabulary():
    from mmrag.common.errors import DataFormatError, MissingPathError

    with pytest.raises(DataFormatError, match="q0.*vocabulary"):
        OracleJudge().judge(items(1), [["x"]])
    with pytest.raises(MissingPathError, match="q0"):
        OracleJudge().judge([dict(items(1)[0], vocabulary="/nonexistent/v.json")], [["x"]])
    with pytest.raises(DataFormatError, match="scene"):
        OracleJudge(VOCAB).judge([{"question_id": "q9", "question": "?"}], [["x"]])


def test_scaffold_mode_prefills_each_score_and_parses_the_number():
    backend = ScriptedBackend([" 7\nReason: ok", "3/10", "the image shows", " 4"])
    grades = [g[0] for g in LLMJudge(backend, mode="scaffold").judge(items(2), [["a"], ["b"]])]
    assert (grades[0].relevancy, grades[0].accuracy) == (7, 3)
    assert grades[1].failure == "relevancy is not a number: 'the image shows'"
    assert [c[-1] for c in backend.seen[:2]] == [{"role": "assistant", "content": "Relevancy:"},
                                                 {"role": "assistant", "content": "Accuracy:"}]


class DistributionBackend(ScriptedBackend):
    """A local-model stand-in that answers zero_to_ten_distribution with fixed distributions."""

    def __init__(self, dists):
        super().__init__([])
        self.dists = dists

    def zero_to_ten_distribution(self, conversations):
        self.seen += list(conversations)
        return self.dists[:len(conversations)]


def test_expected_mode_is_the_expectation_of_the_0_to_10_probabilities():
    one_hot_7 = {"probs": [0.0] * 7 + [1.0] + [0.0] * 3, "mass": 0.9}
    uniform = {"probs": [1 / 11] * 11, "mass": 0.8}
    low = {"probs": [0.0] * 10 + [1.0], "mass": 0.05}
    backend = DistributionBackend([one_hot_7, uniform, low, one_hot_7])
    judge = LLMJudge(backend, mode="expected", min_digit_mass=0.1)
    first, second = [g[0] for g in judge.judge(items(2), [["a"], ["b"]])]
    assert first.relevancy == pytest.approx(7.0) and first.accuracy == pytest.approx(5.0)    # sum(k)/11 = 55/11
    assert second.failure == "relevancy digits hold 5% of the next-token probability"
    assert judge.digit_mass == [0.9, 0.8, 0.05, 0.9]
    assert backend.seen[0][-1] == {"role": "assistant", "content": "Relevancy: "}


def test_modes_that_need_one_answer_per_prompt_or_a_local_model():
    from mmrag.common.errors import ConfigError

    with pytest.raises(ConfigError, match="local"):
        LLMJudge(ScriptedBackend([]), mode="expected")
    with pytest.raises(ConfigError, match="one answer per prompt"):
        LLMJudge(ScriptedBackend([]), mode="scaffold").judge(items(1), [["a", "b"]])
    with pytest.raises(ConfigError, match="mode"):
        LLMJudge(ScriptedBackend([]), mode="vibes")
