"""MiniGPT-v2 conventions: {<x1><y1><x2><y2>} boxes on a 0-100 grid (hand-worked values and a
brute-force round trip), task identifiers, and the minigpt_v2 Llama-2 template."""
from __future__ import annotations

import pytest

from mmrag.processors.boxes import (
    coco_to_corners,
    format_box,
    format_boxes,
    from_grid,
    parse_boxes,
    task_prompt,
    to_grid,
)
from mmrag.processors.conversation import get_template


def test_box_on_the_grid():
    assert format_box([64, 48, 320, 240], 640, 480) == "{<10><10><50><50>}"      # 64/640, 48/480, 320/640, 240/480
    # 100/640*100 = 15.625 -> 15; 639/640*100 = 99.84 -> 99; 479/480*100 = 99.79 -> 99 (truncated, not rounded)
    assert format_box([100, 0, 639, 479], 640, 480) == "{<15><0><99><99>}"
    assert to_grid([-5, 0, 700, 480], 640, 480) == (0, 0, 100, 100)               # clipped to the image
    assert format_boxes([[0, 0, 64, 48], [320, 240, 640, 480]], 640, 480) == "{<0><0><10><10>}<delim>{<50><50><100><100>}"
    assert coco_to_corners([10, 20, 30, 40]) == (10, 20, 40, 60)


@pytest.mark.parametrize("width, height", [(640, 480), (333, 517), (1, 1), (448, 448)])
def test_grid_round_trip(width, height):
    for g in range(101):
        grid = (g, g // 2, min(100, g + 3), 100)
        assert to_grid(from_grid(grid, width, height), width, height) == grid


def test_pixel_round_trip_error_is_below_one_cell():
    box = [123.4, 56.7, 400.1, 300.9]
    back = from_grid(to_grid(box, 640, 480), 640, 480)
    assert all(0 <= a - b < side / 100 for a, b, side in zip(box, back, (640, 480, 640, 480)))  # the cell's lower edge


def test_parse_boxes():
    text = "the dog {<10><20><30><40>}<delim>{<1><2><3><4>} and {<5><5><200><9>} {<9><9><3><3>}"
    assert parse_boxes(text) == [(10, 20, 30, 40), (1, 2, 3, 4)]  # 200 is off the grid, x2 < x1 is no box


def test_bad_boxes():
    with pytest.raises(ValueError, match="x2 >= x1"):
        to_grid([50, 0, 10, 10], 100, 100)
    with pytest.raises(ValueError, match="positive"):
        to_grid([0, 0, 1, 1], 0, 100)


def test_task_prompt_and_template():
    assert task_prompt("What is it?", "vqa") == "<Img><image></Img> [vqa] What is it?"
    assert task_prompt("a cat", "refer", n_images=0) == "[refer] a cat"
    with pytest.raises(ValueError, match="grounding"):
        task_prompt("x", "answer")
    template = get_template("minigpt_v2")
    turns = [{"from": "human", "value": task_prompt("What is it?")}, {"from": "gpt", "value": "a cat"}]
    assert template.prompt(turns[:1]) == "[INST] <Img><image></Img> [vqa] What is it? [/INST]"
    assert template.segments(turns) == [("[INST] <Img><image></Img> [vqa] What is it? [/INST]", False), (" a cat", True)]
