"""MiniGPT-v2's text conventions, which DataEngine's MiniGPT-v2 setting trains and evaluates with.

- A human turn is `<Img><image></Img> [task] instruction`: the image placeholder wrapped in
  <Img></Img>, then one task identifier (TASKS) that tells the model which kind of answer is wanted.
  The `minigpt_v2` conversation template (templates.yaml) wraps the turn in Llama-2's
  `[INST] ... [/INST]`, with no system prompt.
- A box is written `{<x1><y1><x2><y2>}`: corners on a 0-100 grid (x / width * 100, truncated to an
  integer as MiniGPT-v2 does; a hair of 1e-9 is added before truncation so that a grid value turned
  into pixels and back is itself again). Several boxes of one phrase are joined by `<delim>`.
"""
from __future__ import annotations

import math
import re
from typing import List, Sequence, Tuple

TASKS = ("vqa", "caption", "refer", "identify", "grounding", "detection")
GRID = 100
BOX_SEPARATOR = "<delim>"
_BOX = re.compile(r"\{<(\d{1,3})><(\d{1,3})><(\d{1,3})><(\d{1,3})>\}")
Box = Tuple[float, float, float, float]


def task_prompt(instruction: str, task: str = "vqa", n_images: int = 1, image_token: str = "<image>") -> str:
    """`<Img><image></Img> [task] instruction` (one wrapped placeholder per image, none for 0)."""
    if task not in TASKS:
        raise ValueError(f"MiniGPT-v2 task {task!r}: expected one of {', '.join(TASKS)}")
    images = "".join(f"<Img>{image_token}</Img> " for _ in range(n_images))
    return f"{images}[{task}] {instruction.strip()}"


def _check_box(box: Sequence[float]) -> None:
    if len(box) != 4 or box[2] < box[0] or box[3] < box[1]:
        raise ValueError(f"box {list(box)}: expected [x1, y1, x2, y2] with x2 >= x1 and y2 >= y1")


def to_grid(box: Sequence[float], width: float, height: float) -> Tuple[int, int, int, int]:
    """Pixel corners [x1, y1, x2, y2] -> integer corners on the 0-100 grid (clipped to the image)."""
    _check_box(box)
    if width <= 0 or height <= 0:
        raise ValueError(f"image size {width}x{height}: both sides must be positive")
    sides = (width, height, width, height)
    return tuple(min(GRID, max(0, math.floor(v / s * GRID + 1e-9))) for v, s in zip(box, sides))  # type: ignore[return-value]


def from_grid(grid: Sequence[int], width: float, height: float) -> Box:
    """Grid corners -> pixel corners (the lower edge of each grid cell)."""
    _check_box(grid)
    sides = (width, height, width, height)
    return tuple(v / GRID * s for v, s in zip(grid, sides))  # type: ignore[return-value]


def format_box(box: Sequence[float], width: float, height: float) -> str:
    """`{<x1><y1><x2><y2>}` of a pixel box."""
    return "{" + "".join(f"<{v}>" for v in to_grid(box, width, height)) + "}"


def format_boxes(boxes: Sequence[Sequence[float]], width: float, height: float) -> str:
    """Several boxes of one phrase, joined by <delim>."""
    return BOX_SEPARATOR.join(format_box(b, width, height) for b in boxes)


def coco_to_corners(box: Sequence[float]) -> Box:
    """COCO's [x, y, w, h] -> [x1, y1, x2, y2]."""
    x, y, w, h = box
    return (x, y, x + w, y + h)


def parse_boxes(text: str) -> List[Tuple[int, int, int, int]]:
    """Every `{<x1><y1><x2><y2>}` in a text, as grid integers (values above 100 are not boxes)."""
    found = []
    for match in _BOX.finditer(text):
        values = tuple(int(v) for v in match.groups())
        if max(values) <= GRID and values[2] >= values[0] and values[3] >= values[1]:
            found.append(values)
    return found  # type: ignore[return-value]
