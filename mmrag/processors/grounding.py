"""Per-cell grounding targets: which object's name each visual token (a cell of the tower's square
feature grid) should predict, for the model's optional grounding loss (`model.grounding_loss_weight`).

A box [x, y, w, h] in pixels of a `width` x `height` image is placed on the square the image
processor makes (pad-to-square centres the image on its longer side; without padding the image is
stretched), in coordinates 0..1. Cell (row r, column c) of a `grid` x `grid` map spans
[c/grid, (c+1)/grid] x [r/grid, (r+1)/grid] and is token r * grid + c (the towers flatten their maps
row by row). A cell is covered by a box when the box covers at least `min_cover` of the cell's
area; a box that covers no cell that much still claims the cell it overlaps most (a small object
keeps one cell). A cell covered by several boxes goes to the one covering most of it (a tie: the
later box, drawn on top). Uncovered cells get no target (IGNORE_INDEX), or `empty_ids` when given.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from mmrag.common.errors import ConfigError
from mmrag.processors.tokenization import IGNORE_INDEX

TOKEN_MODES = ("first", "all")   # the name's first sub-token | every sub-token of the name


def check_token_mode(mode: str, where: str = "grounding_tokens") -> str:
    if mode not in TOKEN_MODES:
        raise ConfigError(f"{where}={mode!r} is not one of {', '.join(TOKEN_MODES)}")
    return mode


def _square_box(box: Sequence[float], width: int, height: int, pad_to_square: bool) -> List[float]:
    """[x0, y0, x1, y1] of `box` ([x, y, w, h] pixels) in 0..1 coordinates of the processed square."""
    x, y, w, h = (float(v) for v in box)
    if pad_to_square:
        side = max(width, height)
        dx, dy = (side - width) // 2, (side - height) // 2
        return [(x + dx) / side, (y + dy) / side, (x + w + dx) / side, (y + h + dy) / side]
    return [x / width, y / height, (x + w) / width, (y + h) / height]


def cell_cover(box01: Sequence[float], grid: int) -> List[float]:
    """Fraction of each cell's area (row-major, grid * grid values) that the 0..1 box covers."""
    x0, y0, x1, y1 = box01
    cover = []
    for r in range(grid):
        for c in range(grid):
            ox = max(0.0, min(x1, (c + 1) / grid) - max(x0, c / grid))
            oy = max(0.0, min(y1, (r + 1) / grid) - max(y0, r / grid))
            cover.append(ox * oy * grid * grid)
    return cover


def covered_cells(boxes: Sequence[Sequence[float]], width: int, height: int, grid: int,
                  pad_to_square: bool = True, min_cover: float = 0.25) -> List[int]:
    """For each of the grid * grid cells, the index in `boxes` of the box it belongs to, or -1."""
    owner, best = [-1] * (grid * grid), [0.0] * (grid * grid)
    for i, box in enumerate(boxes):
        cover = cell_cover(_square_box(box, width, height, pad_to_square), grid)
        cells = [k for k, v in enumerate(cover) if v >= min_cover - 1e-9]  # a cover exactly at the threshold counts
        if not cells and max(cover) > 0:
            cells = [max(range(len(cover)), key=lambda k: cover[k])]
        for k in cells:
            if cover[k] >= best[k]:   # the later box wins a tie
                owner[k], best[k] = i, cover[k]
    return owner


def name_token_ids(tokenizer, name: str, mode: str = "first") -> List[int]:
    """The ids a name has inside a sentence ("Is there a drugraix ..." -> '▁drug', 'ra', 'ix'): the
    first one (`first`) or all of them (`all`)."""
    # tokenised after a word, as in the questions: the name's ids with their word-initial space
    # for SentencePiece and byte-level BPE tokenizers alike
    head = tokenizer("a", add_special_tokens=False)["input_ids"]
    ids = tokenizer(f"a {name}", add_special_tokens=False)["input_ids"]
    ids = ids[len(head):] if ids[:len(head)] == head else tokenizer(name, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ConfigError(f"grounding: the name {name!r} has no tokens")
    return list(ids[:1] if check_token_mode(mode) == "first" else ids)


def cell_targets(owner: Sequence[int], names_ids: Sequence[Sequence[int]], width: int = 0,
                 empty_ids: Optional[Sequence[int]] = None) -> torch.Tensor:
    """[cells, width] long tensor: row k holds the token ids of the name of box owner[k] (padded with
    IGNORE_INDEX), `empty_ids` for an uncovered cell when given, else IGNORE_INDEX only.
    `names_ids[i]`: the ids of box i's name; `width`: at least the longest row."""
    rows = [list(names_ids[i]) if i >= 0 else list(empty_ids or []) for i in owner]
    width = max([width, 1] + [len(r) for r in rows])
    out = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for k, row in enumerate(rows):
        if row:
            out[k, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def collate_cell_targets(per_image: Sequence[Optional[torch.Tensor]], cells: int) -> torch.Tensor:
    """One [n_images, cells, width] tensor for a batch's images, in order; an image without targets
    (None) gets IGNORE_INDEX everywhere. Rows are padded to the widest with IGNORE_INDEX."""
    width = max([1] + [t.shape[1] for t in per_image if t is not None])
    out = torch.full((len(per_image), cells, width), IGNORE_INDEX, dtype=torch.long)
    for i, t in enumerate(per_image):
        if t is not None:
            if t.shape[0] != cells:
                raise ValueError(f"cell targets of image {i} have {t.shape[0]} cells, the model {cells}")
            out[i, :, :t.shape[1]] = t
    return out
