"""Image preprocessing: optional pad-to-square with the mean colour, resize, normalise."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image

from mmrag.common.errors import ImageReadError


def open_rgb(path: Union[str, Path]) -> Image.Image:
    """Open an image file as RGB (the one image opener); ImageReadError names the file on failure."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as err:
        raise ImageReadError(f"image {path} is missing or unreadable: {err}") from err


class ImageProcessor:
    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float], pad_to_square: bool = True):
        self.image_size = image_size
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.pad_to_square = pad_to_square

    def _square(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        if w == h or not self.pad_to_square:
            return img
        side = max(w, h)
        fill = tuple(int(round(c * 255)) for c in self.mean)
        canvas = Image.new("RGB", (side, side), fill)
        canvas.paste(img, ((side - w) // 2, (side - h) // 2))
        return canvas

    def __call__(self, image: Union[str, Path, Image.Image]) -> torch.Tensor:
        img = open_rgb(image) if not isinstance(image, Image.Image) else image.convert("RGB")
        img = self._square(img).resize((self.image_size, self.image_size), Image.BICUBIC)
        arr = (np.asarray(img, dtype=np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())
