"""MiniGPT-v2's pixel_shuffle projector: which patches form each token (hand-worked indices through an
identity linear map), the token count, and grids it refuses at start-up."""
import pytest
import torch

import mmrag  # noqa: F401
from mmrag.common.errors import ConfigError
from mmrag.models.projectors import PixelShuffleProjector


def _identity(layout, grid, width=2):
    proj = PixelShuffleProjector({"layout": layout, "depth": 1}, width, 4 * width, input_grid=grid)
    with torch.no_grad():
        proj[0].weight.copy_(torch.eye(4 * width)), proj[0].bias.zero_()
    return proj


def _patches(grid):
    # patch i (raster order) carries the features [i, 100 + i]
    return torch.tensor([[[float(i), 100.0 + i] for i in range(grid * grid)]])


def test_row_layout_concatenates_four_consecutive_patches():
    out = _identity("row", 4)(_patches(4))
    assert out.shape == (1, 4, 8)
    assert out[0, 0].tolist() == [0, 100, 1, 101, 2, 102, 3, 103]        # patches 0..3: the first row
    assert out[0, 1].tolist() == [4, 104, 5, 105, 6, 106, 7, 107]        # patches 4..7: the second row


def test_square_layout_concatenates_two_by_two_blocks():
    out = _identity("square", 4)(_patches(4))
    # 4 x 4 grid: block (0,0) holds patches 0, 1, 4, 5; block (0,1) 2, 3, 6, 7; block (1,0) 8, 9, 12, 13
    assert out[0, 0].tolist() == [0, 100, 1, 101, 4, 104, 5, 105]
    assert out[0, 1].tolist() == [2, 102, 3, 103, 6, 106, 7, 107]
    assert out[0, 2].tolist() == [8, 108, 9, 109, 12, 112, 13, 113]


def test_token_count_and_layernorm():
    proj = PixelShuffleProjector({"layout": "row", "depth": 2, "layernorm": True}, 1408, 8, input_grid=32)
    assert proj.num_tokens(1024) == 256                                   # MiniGPT-v2: 32 x 32 patches -> 256
    assert proj[0].in_features == 4 * 1408 and proj.norm.normalized_shape == (1408,)
    small = PixelShuffleProjector({"layout": "row", "layernorm": True}, 2, 3, input_grid=4)
    assert small(torch.randn(2, 16, 2)).shape == (2, 4, 3)


@pytest.mark.parametrize("layout, grid, message", [("row", 6, r"6x6 cannot be cut .*multiple of 4"),
                                                    ("square", 5, r"5x5 cannot be cut .*multiple of 2"),
                                                    ("row", None, "needs a square grid"),
                                                    ("diagonal", 4, "layout='diagonal'")])
def test_refused_at_start_up(layout, grid, message):
    with pytest.raises(ConfigError, match=message):
        PixelShuffleProjector({"layout": layout}, 2, 4, input_grid=grid)


def test_in_the_model(tiny_model_cfg, tiny_model_builder):
    # the tiny tower's grid is 2 x 2: one square block -> 1 token; rows of 4 do not fit
    model = tiny_model_builder({**tiny_model_cfg, "projector": {"type": "pixel_shuffle", "layout": "square"}})
    assert model.num_visual_tokens == 1
    assert model.encode_images(torch.zeros(3, 3, 32, 32)).shape == (3, 1, 48)
    with pytest.raises(ConfigError, match=r"2x2 cannot be cut"):
        tiny_model_builder({**tiny_model_cfg, "projector": {"type": "pixel_shuffle"}})
