"""The LLM generator of LRV instructions: prompt layout, robust parsing, and a run through a real HTTP
stub server (OpenAI-compatible) on the tiny world."""
import json

from mmrag.common.chat_client import EndpointConfig, OpenAIChatClient
from mmrag.datasets.world.lrv_instructions import load_scene_graphs, write_lrv_instructions
from mmrag.datasets.world.lrv_llm import LlmGenerator, build_prompt, check_block, parse_blocks
from tests.helpers.chat_stub import ChatStub

REPLY = """Here are the items.

1. **Task:** description
   **Instruction:** Describe the picture.
   **Answer:** A tree stands beside a small tool.
Task: counting
Instruction: How many objects are there?
Answer: There are two
objects.

Task: negative
Question: Why is the purple cat sleeping?
Answer: There is no cat in the picture; it shows a tree and a tool.

Task: negative
Instruction: Describe the red car.
Answer: The red car is fast.

Task: attribute
Instruction: Where is the tree?
Answer: The tree is at X: 10 Y: 20.

Task: attribute
Instruction: What colour is the tool?
Answer: """ + "very " * 30 + """red.

Task: existence
Instruction: Describe the picture.
Answer: Again the same instruction.

Instruction: Is there a tree?"""


def test_parse_blocks_and_checks_count_every_cause():
    blocks = parse_blocks(REPLY)
    assert [b.get("task") for b in blocks] == ["description", "counting", "negative", "negative", "attribute",
                                               "attribute", "existence", None]
    assert blocks[1]["answer"] == "There are two objects."       # wrapped answer joined
    assert blocks[2]["instruction"] == "Why is the purple cat sleeping?"  # 'Question:' accepted
    causes = [check_block(b)[1] for b in blocks]
    assert causes == [None, None, None, "answer_polarity_mismatch", "answer_names_coordinates",
                      "answer_30_words_or_more", None, "missing_instruction_or_answer"]
    item, _ = check_block(blocks[2])
    assert item["task"] == "negative_llm" and item["form"] == "interrogative"


def test_prompt_shows_regions_in_lrv_layout(tiny_world):
    world, _ = tiny_world
    graphs, _ = load_scene_graphs(world, 0)
    regions = json.loads((world / "regions/region_descriptions.json").read_text())
    first = regions[0]
    graph = next(g for g in graphs if g.image_id == first["image_id"])
    text = build_prompt(graph, first["regions"], 10, 6, 3)[1]["content"]
    r = first["regions"][0]
    assert f"X: {r['x']} Y: {r['y']} Width: {r['width']} Height: {r['height']}" in text


def test_llm_generator_through_http_stub(tiny_world, tmp_path):
    world, _ = tiny_world
    graphs, entities = load_scene_graphs(world, 0)
    n_train = sum(g.split == "train" for g in graphs)
    with ChatStub(reply=lambda request: REPLY) as stub:
        client = OpenAIChatClient(EndpointConfig(url=stub.url, model="stub", concurrency=4, backoff_s=0.01,
                                                 cache_dir=str(tmp_path / "cache")))
        generator = LlmGenerator(client, world, entities)
        counts = write_lrv_instructions(world, 0, generator)
    assert counts["llm_replies"] == n_train and counts["llm_kept"] == 3 * n_train
    assert counts["llm_dropped_repeated_instruction"] == n_train
    assert counts["llm_dropped_answer_polarity_mismatch"] == n_train
    assert len(stub.requests) == n_train
    assert "Width:" in stub.requests[0]["body"]["messages"][1]["content"]
    train = [json.loads(l) for l in (world / "lrv/items_train.jsonl").read_text().splitlines()]
    assert {i["task"] for i in train} == {"description", "counting", "negative_llm"}
    test = [json.loads(l) for l in (world / "lrv/items_test.jsonl").read_text().splitlines()]
    assert all("claims" in i or "premise" in i for i in test)  # val/test stay with the oracle
    write_lrv_instructions(world, 0)  # leave the oracle's files for the other tests of the session
