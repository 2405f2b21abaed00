"""The image processor's table normalisation equals normalising every pixel, bit for bit."""
import numpy as np
import pytest
import torch
from PIL import Image

from mmrag.processors.image_processing import ImageProcessor


@pytest.mark.parametrize("mean, std", [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                                       ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])
def test_table_normalisation_is_bit_exact(mean, std):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    out = ImageProcessor(24, mean, std, pad_to_square=True)(img)
    # oracle: the per-pixel formula on the same padded, resized image
    side = Image.new("RGB", (40, 40), tuple(int(round(c * 255)) for c in mean))
    side.paste(img, (0, 5))
    arr = np.asarray(side.resize((24, 24), Image.BICUBIC), dtype=np.float32)
    expected = (arr / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    assert out.dtype == torch.float32 and out.shape == (3, 24, 24)
    assert torch.equal(out, torch.from_numpy(expected.transpose(2, 0, 1).copy()))
