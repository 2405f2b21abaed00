"""DataEngine generators: the reply parser on good and malformed replies, the oracle generator (kept
items pass the scene-graph check, steering follows the bad cases), IADS refinement, the LLM generator
against a local OpenAI-compatible server (tests/helpers/chat_stub.py) and, when present, SmolLM2."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from mmrag.common.chat_client import EndpointConfig, OpenAIChatClient
from mmrag.datasets.world import typed_benchmark as tb
from mmrag.pipelines import data_engine_generators as gens
from tests.datasets.world.test_typed_benchmark import hand_scene
from tests.helpers.chat_stub import ChatStub

GOOD = """Question: How many creatures are in the image?
Choices: A. one B. two C. three D. four
Answer: B
Explanation: There is a blue creature and a red creature."""

REPLIES = {  # reply -> expected reason (by hand)
    GOOD: "ok",
    "Question: Is there a tree in the image?\nChoices:\nA. yes\nB. no\nC. maybe\nD. cannot tell\nAnswer: (A)\n": "ok",
    "Question: What colour is the striped creature?\nOptions: A. red B. blue C. green D. grey\nAnswer: blue": "ok",
    "": "empty",
    "   \n": "empty",
    "Sure! Here is a question about the picture.": "malformed",
    "Question: How many creatures are in the image?\nChoices: A. one B. two C. thr": "truncated",
    "Question: How many creatures?\nChoices: A. one B. two C. three\nAnswer: B": "wrong number of choices",
    "Question: How many creatures?\nChoices: A. one B. two C. two D. four\nAnswer: B": "wrong number of choices",
    "Question: How many creatures?\nChoices: A. one B. two C. three D. four\nAnswer: A and B": "two answers",
    "Question: How many creatures?\nChoices: A. one B. two C. three D. four\nAnswer: B\nAnswer: C": "two answers",
    "Question: How many creatures?\nChoices: A. one B. two C. three D. four\nAnswer: E": "nonexistent option",
    "Question: How many creatures?\nChoices: A. one B. two C. three D. four\nAnswer: seven": "nonexistent option",
    "Question: What is at [0.10, 0.21, 0.31, 0.42]?\nChoices: A. tree B. rock C. cup D. ball\nAnswer: A": "mentions coordinates",
    "Question: Which object has its box at x 0.45?\nChoices: A. tree B. rock C. cup D. ball\nAnswer: A": "mentions coordinates",
}


def test_parser_on_good_and_malformed_replies():
    for reply, expected in REPLIES.items():
        parsed, reason = gens.parse_reply(reply)
        assert reason == expected, reply
        assert (parsed is None) == (expected != "ok")
    parsed, _ = gens.parse_reply(GOOD)
    assert parsed.options == ["one", "two", "three", "four"] and parsed.letter == "B"
    assert parsed.question == "How many creatures are in the image?"
    assert gens.parse_reply(list(REPLIES)[2])[0].letter == "B"   # the answer given as the option's text


def request(qtype, bad=(), seed=0, item_id="x"):
    return gens.Request(qtype, hand_scene(), list(bad), item_id, seed)


NAMES = {"creature": ["zorblat", "quimbel", "drikreel", "troukrux"], "plant": [], "tool": [], "vehicle": []}


def test_oracle_generator_items_pass_the_check_and_follow_the_bad_cases():
    generator = gens.OracleGenerator(NAMES, steer=1.0)
    bad = [{"id": "b", "subtype": "pattern", "qtype": "attribute"}]
    out = generator.generate([request("attribute", bad, seed=s, item_id=f"x{s}") for s in range(50)])
    assert all(g.item is not None for g in out)
    # steer 1.0: every item asks the bad case's sub-kind; pattern questions name it ("Which pattern ...")
    assert all(g.item["subtype"] == "pattern" and "pattern" in g.item["instruction"] for g in out)
    checked = gens.oracle_checked(out, [request("attribute")] * len(out))
    assert all(g.reason == "kept" for g in checked)
    free = gens.OracleGenerator(NAMES, steer=1.0).generate([request("attribute", (), seed=s) for s in range(60)])
    assert len({g.item["subtype"] for g in free}) == 3   # no bad cases: colour, pattern and shape all appear


def test_oracle_check_rejects_a_wrong_generated_answer():
    item = {"id": "x", "instruction": "How many creatures are in the image?", "short_answer": "three",
            "options": ["one", "two", "three", "four"], "choice_answer": "C", "qtype": "count", "image": "images/x.jpg"}
    out = gens.oracle_checked([gens.Generated(item)], [request("count")])
    assert out[0].item is None and out[0].reason == "oracle: wrong answer"


def test_refinement_appends_a_rule_for_the_main_failure_and_records_it():
    defs = gens.TypeDefinitions({"count": "Count: ask how many."})
    assert defs.refine("count", Counter({"kept": 8, "two answers": 2}), 10, 1) is None   # 20% rejected
    rev = defs.refine("count", Counter({"kept": 2, "two answers": 5, "empty": 3}), 10, 1)
    assert rev["reason"] == "two answers" and rev["revision"] == 1
    assert defs.definitions["count"] == "Count: ask how many. " + gens.REFINEMENT_RULES["two answers"]
    rev = defs.refine("count", Counter({"two answers": 5, "empty": 3}), 8, 2)   # that rule is in: the next reason
    assert rev["reason"] == "empty" and rev["revision"] == 2 and len(defs.history) == 2


def stub_reply(body):
    text = body["messages"][-1]["content"]
    assert "Objects (box = x1, y1, x2, y2" in text and "Question type:" in text
    if "Count:" in text:
        return GOOD
    if "Existence:" in text:   # a confident wrong answer: the oracle check drops it
        return "Question: Is there a cup in the image?\nChoices: A. yes B. no C. maybe D. cannot tell\nAnswer: A"
    return "I cannot help with that."


def test_llm_generator_against_a_local_server():
    with ChatStub(reply=stub_reply) as stub:
        client = OpenAIChatClient(EndpointConfig(url=stub.url, model="stub", backoff_s=0.0, max_retries=2))
        generator = gens.LLMGenerator(client, gens.TypeDefinitions.load(tb.QTYPES), gens.load_prompt("system"))
        bad = [{"id": "b", "instruction": "How many trees are in the image?", "options": ["one", "two", "three", "four"],
                "choice_answer": "A", "qtype": "count"}]
        requests = [request("count", bad, item_id="c"), request("existence", item_id="e"), request("spatial", item_id="s")]
        out = gens.oracle_checked(generator.generate(requests), requests)
        assert [g.reason for g in out] == ["kept", "oracle: wrong answer", "malformed"]
        assert out[0].item["short_answer"] == "two" and out[0].item["image"] == "images/x.jpg"
        first = next(r["body"]["messages"] for r in stub.requests if "Count:" in r["last_message"])
        assert first[0]["role"] == "system" and "How many trees are in the image?" in first[1]["content"]
        assert "zorblat" in first[1]["content"]   # entity names and facts are in the annotations
        stub.script(generator_prompt(generator, request("count", bad)), [500, 500, 500])
        with pytest.raises(gens.EndpointFailed, match="failed after retries"):
            generator.generate([request("count", bad)])


def generator_prompt(generator, req):
    return gens.build_messages(req, generator.definitions.definitions[req.qtype], generator.system)[-1]["content"]


SMOLLM = Path(__file__).resolve().parents[2] / "assets" / "smollm2-135m-instruct"


@pytest.mark.skipif(not (SMOLLM / "config.json").is_file(), reason="assets/smollm2-135m-instruct absent (mmrag-prepare-assets smollm2)")
def test_three_item_round_with_smollm2():
    from mmrag.models.text_generator import build_chat_backend

    backend = build_chat_backend({"type": "local", "path": str(SMOLLM), "batch_size": 3})
    generator = gens.LLMGenerator(backend, gens.TypeDefinitions.load(tb.QTYPES), gens.load_prompt("system"), max_tokens=32)
    requests = [request(q, item_id=q) for q in ("count", "existence", "attribute")]
    out = gens.oracle_checked(generator.generate(requests), requests)
    assert len(out) == 3 and all(isinstance(g.reply, str) for g in out)
    assert all(g.reason == "kept" or g.reason in gens.REJECT_REASONS or g.reason.startswith("oracle") for g in out)
    for g in out:
        if g.item is not None:   # whatever the small model wrote, a kept item is true of the scene
            assert tb.check_item(g.item, hand_scene()) == (True, "ok")
