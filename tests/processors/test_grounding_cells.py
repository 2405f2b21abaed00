"""Per-cell grounding targets: cells and names worked out by hand from boxes on a 100-px image."""
from __future__ import annotations

import pytest
import torch

from mmrag.common.errors import ConfigError
from mmrag.processors.grounding import (cell_cover, cell_targets, collate_cell_targets, covered_cells,
                                        name_token_ids)
from mmrag.processors.tokenization import IGNORE_INDEX as IGN

# a 100 x 100 image on a 5 x 5 grid: cell (r, c) spans x 20c..20c+20, y 20r..20r+20, token 5r + c


def test_a_box_on_cell_borders_covers_exactly_its_cells():
    assert covered_cells([[20, 20, 40, 20]], 100, 100, 5) == [
        -1, -1, -1, -1, -1,
        -1, 0, 0, -1, -1,   # cells 6 and 7: x 20..60, y 20..40
        -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1,
        -1, -1, -1, -1, -1]


def test_cover_threshold_and_small_box_keeps_its_best_cell():
    # 10 x 10 in the corner: a quarter of cell 0, exactly the default threshold
    assert [k for k, o in enumerate(covered_cells([[0, 0, 10, 10]], 100, 100, 5)) if o == 0] == [0]
    # 8 x 8 straddling cells 0/1/5/6 at (16, 16): cell 0 holds 4 x 4 = 16 px of 400 (4%), cell 6 holds 4 x 4 too;
    # below the threshold everywhere, so the box keeps its largest overlap (all four equal: the first, cell 0)
    box = [[16, 16, 8, 8]]
    assert [round(v, 4) for v in cell_cover([0.16, 0.16, 0.24, 0.24], 5)[:7]] == [0.04, 0.04, 0, 0, 0, 0.04, 0.04]
    assert [k for k, o in enumerate(covered_cells(box, 100, 100, 5)) if o == 0] == [0]
    # 30 x 30 at (10, 10): cell 0 covered 10 x 10 = 25%, cells 1 and 5 50%, cell 6 100%
    owner = covered_cells([[10, 10, 30, 30]], 100, 100, 5)
    assert [k for k, o in enumerate(owner) if o == 0] == [0, 1, 5, 6]
    assert [k for k, o in enumerate(covered_cells([[10, 10, 30, 30]], 100, 100, 5, min_cover=0.5)) if o == 0] == [1, 5, 6]


def test_overlapping_boxes_the_larger_cover_wins_and_a_tie_goes_to_the_later_box():
    # A covers cells 0, 1, 5, 6 fully; B = x 30..60, y 30..60 covers cell 6 by 25%, cells 7 and 11 by 50%, 12 fully
    owner = covered_cells([[0, 0, 40, 40], [30, 30, 30, 30]], 100, 100, 5)
    assert {k: o for k, o in enumerate(owner) if o >= 0} == {0: 0, 1: 0, 5: 0, 6: 0, 7: 1, 11: 1, 12: 1}
    same = covered_cells([[20, 20, 20, 20], [20, 20, 20, 20]], 100, 100, 5)
    assert {k: o for k, o in enumerate(same) if o >= 0} == {6: 1}


def test_pad_to_square_shifts_a_wide_image_down_and_stretching_does_not():
    # 100 x 50: padded to 100 x 100 with 25 px above, the box y 0..20 lands on y 25..45 (row 1: 75%, row 2: 25%)
    assert {k for k, o in enumerate(covered_cells([[0, 0, 20, 20]], 100, 50, 5)) if o == 0} == {5, 10}
    # stretched: y 0..20 of 50 is 0..0.4, rows 0 and 1 fully
    assert {k for k, o in enumerate(covered_cells([[0, 0, 20, 20]], 100, 50, 5, pad_to_square=False)) if o == 0} == {0, 5}


def test_cell_targets_rows_pad_with_ignore_and_empty_cells_take_the_empty_ids():
    out = cell_targets([-1, 0, 1], [[5, 6], [7]])
    assert out.tolist() == [[IGN, IGN], [5, 6], [7, IGN]]
    assert cell_targets([-1, 1], [[5, 6], [7]], empty_ids=[9]).tolist() == [[9], [7]]
    assert cell_targets([0], [[5]], width=3).tolist() == [[5, IGN, IGN]]


def test_collate_stacks_images_in_order_and_fills_missing_images_with_ignore():
    a = torch.tensor([[1], [IGN]])
    b = torch.tensor([[2, 3], [4, IGN]])
    out = collate_cell_targets([a, None, b], cells=2)
    assert out.tolist() == [[[1, IGN], [IGN, IGN]], [[IGN, IGN], [IGN, IGN]], [[2, 3], [4, IGN]]]
    with pytest.raises(ValueError, match="3 cells, the model 2"):
        collate_cell_targets([torch.tensor([[1], [2], [3]])], cells=2)


def test_name_ids_are_the_ids_the_name_has_inside_a_question():
    from omegaconf import OmegaConf

    from mmrag.processors.tokenizers import load_tokenizer

    tok = load_tokenizer(OmegaConf.create({"path": None, "tokenizer_path": None, "config": {"hidden_size": 8}}))
    # the bundled 32k LLaMA tokenizer splits the question "Is there a drugraix in the image?" into
    # '▁Is', '▁there', '▁a', '▁drug', 'ra', 'ix', '▁in', ... (read off its vocabulary by hand)
    assert tok.convert_ids_to_tokens(name_token_ids(tok, "drugraix", "all")) == ["▁drug", "ra", "ix"]
    assert tok.convert_ids_to_tokens(name_token_ids(tok, "drugraix", "first")) == ["▁drug"]
    assert tok.convert_ids_to_tokens(name_token_ids(tok, "tree", "all")) == ["▁tree"]
    with pytest.raises(ConfigError, match="grounding_tokens='last'"):
        name_token_ids(tok, "tree", "last")
