"""Image files -> preprocessed pixel batches -> host vectors, for the CLIP embedder (`clip_embedder.py`).

Two ways to get pixels:

- PIL (`ImageFiles`): DataLoader workers open, decode and preprocess each image.
- tensors (`ImageBytes` + `collate_named_blobs` + `TensorPixelPipeline`): workers only read the files'
  bytes; the main process decodes a batch on the decode device (nvJPEG on CUDA), then resizes,
  centre-crops and normalises there as the CLIP preprocess does (`PixelSpec`). On CUDA this runs on a
  side stream: while the model's kernels for batch i run on the compute stream, the host is already
  decoding batch i+1 (nvJPEG blocks the host until its decode finishes, so the model must be queued
  first, which the embedder's loop does).

And one way back: `lagged_host_copies` copies each block of device vectors into pinned host memory
without waiting and hands it out one block later, so the host never waits for the model of the batch
it has just queued.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mmrag.common.errors import ConfigError, ImageReadError
from mmrag.processors.image_processing import open_rgb

JPEG_MAGIC = [0xFF, 0xD8, 0xFF]  # every JPEG file starts with SOI + the next marker's 0xFF


class EmbedderConfigError(ConfigError):
    """A bad embedder config: names the key and the value that is wrong."""


# ----------------------------------------------------------------------------- PIL path
class ImageFiles(Dataset):
    """Decoded + preprocessed images, one per path; runs inside DataLoader workers."""

    def __init__(self, paths: Sequence[str | Path], preprocess: Callable[[Image.Image], torch.Tensor]) -> None:
        self.paths = [str(p) for p in paths]
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.preprocess(open_rgb(self.paths[i]))


# ----------------------------------------------------------------------------- the preprocess as tensor ops
@dataclass(frozen=True)
class PixelSpec:
    """What a CLIP preprocess does to a decoded RGB image, replayed on uint8 tensors on any device."""

    resize: Tuple[int, ...]           # (shortest_edge,) or (height, width), as torchvision's Resize takes it
    crop: Optional[Tuple[int, int]]   # centre crop (height, width), or None
    mean: Tuple[float, ...]           # per channel, on the 0..1 scale
    std: Tuple[float, ...]
    interpolation: str = "bicubic"    # bicubic | bilinear
    antialias: bool = True
    crop_floor: bool = False          # crop offset floor((h - crop) / 2) as transformers; else round() as torchvision


# transforms of open_clip's eval preprocess that the tensor path does implicitly (RGB uint8 -> float)
_IMPLICIT_TRANSFORMS = {"MaybeConvertMode", "MaybeToTensor", "ToTensor", "_convert_to_rgb", "function"}


def pixel_spec_from_transform(transform: Any) -> PixelSpec:
    """Read Resize / CenterCrop / Normalize off a torchvision Compose (open_clip's eval preprocess)."""
    import torchvision.transforms as T

    found: Dict[str, Any] = {}
    for step in getattr(transform, "transforms", [transform]):
        name = type(step).__name__
        if isinstance(step, T.Resize):
            size = [step.size] if isinstance(step.size, int) else list(step.size)
            found.update(resize=tuple(size), interpolation=step.interpolation.value, antialias=bool(step.antialias))
        elif isinstance(step, T.CenterCrop):
            found["crop"] = tuple(step.size)
        elif isinstance(step, T.Normalize):
            found.update(mean=tuple(step.mean), std=tuple(step.std))
        elif name not in _IMPLICIT_TRANSFORMS and getattr(step, "__name__", "") not in _IMPLICIT_TRANSFORMS:
            raise EmbedderConfigError(f"embedder config: decode on tensors cannot replay the preprocess step {step!r}")
    missing = [k for k in ("resize", "mean") if k not in found]
    if missing:
        raise EmbedderConfigError(f"embedder config: the image preprocess has no {missing[0]} step: {transform!r}")
    return PixelSpec(crop=found.pop("crop", None), **found)


def pixel_spec_from_hf(processor: Any) -> PixelSpec:
    """The same for a Hugging Face CLIPImageProcessor (shortest-edge resize, centre crop, rescale, normalise)."""
    size, crop = processor.size, processor.crop_size
    shortest = size.get("shortest_edge") if hasattr(size, "get") else None
    resize = (int(shortest),) if shortest else (int(size["height"]), int(size["width"]))
    resample = int(getattr(processor.resample, "value", processor.resample))  # PIL enum: 2 bilinear, 3 bicubic
    if resample not in (2, 3):
        raise EmbedderConfigError(f"embedder config: decode on tensors supports bilinear/bicubic resampling, got {resample}")
    return PixelSpec(resize=resize, crop=(int(crop["height"]), int(crop["width"])) if processor.do_center_crop else None,
                     mean=tuple(processor.image_mean), std=tuple(processor.image_std),
                     interpolation="bicubic" if resample == 3 else "bilinear", crop_floor=True)


# ----------------------------------------------------------------------------- bytes from the workers
def _read_bytes(path: str) -> torch.Tensor:
    from torchvision.io import read_file

    try:
        return read_file(path)
    except RuntimeError as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from err


class ImageBytes(Dataset):
    """The raw bytes of each file (uint8, 1-D); runs inside DataLoader workers, decodes nothing.

    With `preprocess` and `cpu_share` > 0, that share of the files (spread evenly) is instead decoded
    and preprocessed in the worker (float32, 3-D), so the decode device does less: on a GPU the model
    and nvJPEG compete for the same SMs, the CPU workers are otherwise idle. Which files those are is
    decided by each file's `positions` entry (its index in the whole collection; default 0..n-1), not by
    its place in this dataset, so a collection split among processes, or a resumed run, decodes every
    file the way one uninterrupted process does (PIL's and nvJPEG's pixels differ slightly).
    """

    def __init__(self, paths: Sequence[str | Path], preprocess: Optional[Callable[[Image.Image], torch.Tensor]] = None,
                 cpu_share: float = 0.0, positions: Optional[Sequence[int]] = None) -> None:
        if not 0.0 <= cpu_share <= 1.0:
            raise EmbedderConfigError(f"embedder config: 'cpu_decode_share' = {cpu_share!r}; expected 0 <= share <= 1")
        if cpu_share > 0 and preprocess is None:
            raise ValueError("ImageBytes: a cpu_share > 0 needs the PIL preprocess")
        self.paths = [str(p) for p in paths]
        if positions is not None and len(positions) != len(self.paths):
            raise ValueError(f"ImageBytes: {len(positions)} positions for {len(self.paths)} paths")
        self.positions = None if positions is None else np.asarray(positions, dtype=np.int64)
        self.preprocess, self.cpu_share = preprocess, cpu_share

    def __len__(self) -> int:
        return len(self.paths)

    def decoded_in_worker(self, i: int) -> bool:
        """Whether file i is decoded by the worker: `cpu_share` of the collection, evenly spread over
        the files' positions in it."""
        at = i if self.positions is None else int(self.positions[i])
        return math.floor((at + 1) * self.cpu_share) > math.floor(at * self.cpu_share)

    def __getitem__(self, i: int) -> Tuple[str, torch.Tensor]:
        if self.decoded_in_worker(i):
            return self.paths[i], self.preprocess(open_rgb(self.paths[i]))
        return self.paths[i], _read_bytes(self.paths[i])


@dataclass
class MixedBatch:
    """A collated batch of file bytes (`names`, `flat`, `lengths`) plus pixels the workers already made
    (`pixels`, their batch positions `pixel_rows`); `byte_rows`: the batch positions of the byte files."""

    names: List[str]
    flat: torch.Tensor
    lengths: List[int]
    byte_rows: List[int]
    pixels: Optional[torch.Tensor] = None
    pixel_rows: Optional[List[int]] = None

    def pin_memory(self) -> "MixedBatch":  # DataLoader(pin_memory=True) calls this on custom batches
        self.flat = self.flat.pin_memory()
        self.pixels = self.pixels.pin_memory() if self.pixels is not None else None
        return self


def collate_named_blobs(items: List[Tuple[str, torch.Tensor]]) -> Tuple[List[str], torch.Tensor, List[int]]:
    """Collate a batch's files into one flat byte tensor + their lengths (module level: workers pickle it).

    One tensor a batch crosses the process boundary in one shared-memory block (and is pinned in one
    piece); a list of per-file tensors would need one file descriptor each (and broke with 'Bad file
    descriptor' in testing).
    """
    return [name for name, _ in items], torch.cat([blob for _, blob in items]), [int(b.numel()) for _, b in items]


def collate_mixed(items: List[Tuple[str, torch.Tensor]]) -> MixedBatch:
    """Collate bytes and worker-made pixels apart (module level: workers pickle it)."""
    is_bytes = [t.dtype == torch.uint8 and t.dim() == 1 for _, t in items]
    byte_rows = [j for j, flag in enumerate(is_bytes) if flag]
    pixel_rows = [j for j, flag in enumerate(is_bytes) if not flag]
    names, flat, lengths = collate_named_blobs([items[j] for j in byte_rows]) if byte_rows else ([], torch.zeros(0, dtype=torch.uint8), [])
    pixels = torch.stack([items[j][1] for j in pixel_rows]) if pixel_rows else None
    return MixedBatch(names, flat, lengths, byte_rows, pixels, pixel_rows if pixel_rows else None)


def jpeg_flags(flat: torch.Tensor, lengths: Sequence[int]) -> List[bool]:
    """Which files of a collated batch start with the JPEG magic bytes, in one vector op (not one per file)."""
    if not lengths:
        return []
    sizes = torch.tensor(list(lengths), dtype=torch.long)
    if flat.numel() == 0:
        return [False] * len(lengths)
    starts = torch.cumsum(sizes, 0) - sizes
    at = (starts[:, None] + torch.arange(len(JPEG_MAGIC))).clamp_(max=flat.numel() - 1)  # short files: masked below
    heads = flat[at] == torch.tensor(JPEG_MAGIC, dtype=flat.dtype)
    return ((sizes > len(JPEG_MAGIC)) & heads.all(dim=1)).tolist()


# ----------------------------------------------------------------------------- decode
def _decode_on_cpu(blob: torch.Tensor, name: str) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image

    try:
        return decode_image(blob, mode=ImageReadMode.RGB)
    except RuntimeError as err:
        raise ImageReadError(f"cannot read image {name}: {err}") from err


def _decode_jpegs(blobs: List[torch.Tensor], names: List[str], device: torch.device) -> List[torch.Tensor]:
    """One batched decode on `device`; if it fails, image by image (CPU fallback) to name the bad file."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return list(decode_jpeg(blobs, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        if len(blobs) == 1:
            return [_decode_on_cpu(blobs[0], names[0]).to(device)]
    return [image for blob, name in zip(blobs, names) for image in _decode_jpegs([blob], [name], device)]


def decode_images(blobs: Sequence[torch.Tensor], names: Sequence[str], device: torch.device | str,
                  is_jpeg: Optional[Sequence[bool]] = None) -> List[torch.Tensor]:
    """Decode file bytes to RGB uint8 (3, H, W) tensors on `device`, in order. JPEGs are decoded there
    in one batch (nvJPEG on CUDA); other formats on the CPU, then moved. ImageReadError names a bad file.
    `is_jpeg` (one flag per blob, e.g. from `jpeg_flags`) saves looking at each blob's first bytes."""
    device = torch.device(device)
    if is_jpeg is None:
        is_jpeg = [b.numel() > 3 and b[:3].tolist() == JPEG_MAGIC for b in blobs]
    jpeg_at = [i for i, flag in enumerate(is_jpeg) if flag]
    decoded = _decode_jpegs([blobs[i] for i in jpeg_at], [names[i] for i in jpeg_at], device) if jpeg_at else []
    images: List[Optional[torch.Tensor]] = [None] * len(blobs)
    for i, image in zip(jpeg_at, decoded):
        images[i] = image
    for i, flag in enumerate(is_jpeg):
        if not flag:
            images[i] = _decode_on_cpu(blobs[i], names[i]).to(device)
    return images  # type: ignore[return-value]


# ----------------------------------------------------------------------------- resize, crop, normalise
def _center_crop(images: torch.Tensor, spec: PixelSpec) -> torch.Tensor:
    from torchvision.transforms import functional as TF

    (height, width), (crop_h, crop_w) = images.shape[-2:], spec.crop
    if not spec.crop_floor or crop_h > height or crop_w > width:  # torchvision's rounding (and its padding)
        return TF.center_crop(images, [crop_h, crop_w])
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return images[..., top:top + crop_h, left:left + crop_w]


def preprocess_tensors(images: Sequence[torch.Tensor], spec: PixelSpec) -> torch.Tensor:
    """RGB uint8 (3, H, W) tensors -> normalised float32 (B, 3, h, w) on their device, as `spec` says.

    Images of the same size are resized together (one kernel per size, not per image). The resized
    pixels are clamped and rounded to 0..255 because the PIL path resizes in uint8 (bicubic overshoots).
    Nothing here copies between host and device, so on CUDA the host never waits for the GPU.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    mode = InterpolationMode(spec.interpolation)
    by_size: Dict[Tuple[int, int], List[int]] = {}
    for i, image in enumerate(images):
        by_size.setdefault(tuple(image.shape[-2:]), []).append(i)
    rows: List[Optional[torch.Tensor]] = [None] * len(images)
    groups = []
    for indices in by_size.values():
        group = torch.stack([images[i] for i in indices]).float()
        group = TF.resize(group, list(spec.resize), interpolation=mode, antialias=spec.antialias).clamp_(0, 255).round_()
        group = _center_crop(group, spec) if spec.crop is not None else group
        groups.append(group)
        for j, i in enumerate(indices):
            rows[i] = group[j]
    out = groups[0].contiguous() if len(groups) == 1 else torch.stack(rows)  # type: ignore[arg-type]
    for channel, (mean, std) in enumerate(zip(spec.mean, spec.std)):  # python scalars: no host->device copy
        out[:, channel].sub_(mean * 255.0).div_(std * 255.0)
    return out


class TensorPixelPipeline:
    """Decode + preprocess collated batches of file bytes on `decode_device`, handing the pixels to the
    current stream of `target_device` (the model's).

    On CUDA the work is queued on a side stream; the consumer stream waits for it (`wait_stream`) and the
    pixels are marked as used there (`record_stream`) so the allocator does not hand their memory back to
    the side stream while the model still reads them.
    """

    def __init__(self, spec: PixelSpec, decode_device: torch.device, target_device: torch.device) -> None:
        self.spec = spec
        self.decode_device = torch.device(decode_device)
        self.target_device = torch.device(target_device)
        # high priority: the few small preprocess kernels get SMs between the model's kernels, so the
        # next batch is ready before the model needs it
        self.side = torch.cuda.Stream(device=self.decode_device, priority=-1) if self.decode_device.type == "cuda" else None

    def pixels(self, names: List[str], flat: torch.Tensor, lengths: List[int]) -> torch.Tensor:
        """(B, 3, h, w) float32 pixels on the target device for one collated batch."""
        blobs = list(torch.split(flat, lengths))
        flags = jpeg_flags(flat, lengths)
        if self.side is None:
            pixels = preprocess_tensors(decode_images(blobs, names, self.decode_device, flags), self.spec)
            return pixels.to(self.target_device, non_blocking=True)
        with torch.cuda.stream(self.side):
            pixels = preprocess_tensors(decode_images(blobs, names, self.decode_device, flags), self.spec)
        consumer = torch.cuda.current_stream(self.decode_device)
        consumer.wait_stream(self.side)
        pixels.record_stream(consumer)
        return pixels.to(self.target_device, non_blocking=True)

    def mixed_pixels(self, batch: MixedBatch) -> torch.Tensor:
        """`pixels` for a MixedBatch: decoded bytes and the workers' pixels, back in batch order."""
        if batch.pixels is None:
            return self.pixels(batch.names, batch.flat, batch.lengths)
        ready = batch.pixels.to(self.target_device, non_blocking=True)
        if not batch.byte_rows:
            return ready
        decoded = self.pixels(batch.names, batch.flat, batch.lengths)
        out = torch.empty((len(batch.byte_rows) + len(batch.pixel_rows), *ready.shape[1:]), dtype=ready.dtype,
                          device=ready.device)
        for rows, values in ((batch.pixel_rows, ready), (batch.byte_rows, decoded)):
            index = torch.tensor(rows, dtype=torch.long).to(out.device, non_blocking=True)
            out.index_copy_(0, index, values)
        return out


def start_pixel_loader(paths: Sequence[str | Path], preprocess: Callable, spec: PixelSpec,
                       decode_device: Optional[torch.device], target_device: torch.device, batch_size: int,
                       workers: int, cpu_share: float = 0.0, prefetch: Optional[int] = None,
                       positions: Optional[Sequence[int]] = None) -> Iterator[torch.Tensor]:
    """Preprocessed float32 pixel batches of `paths`, in order, on `target_device`. The DataLoader's
    iterator is created here, so its workers start decoding now rather than at the first `next()`: a
    caller that builds its model after this call overlaps the two (the first batch is ready sooner).
    `decode_device` None: PIL decodes and `preprocess`es in the workers; else the workers read the file
    bytes and a TensorPixelPipeline(`spec`) decodes them on `decode_device`, except a `cpu_share` of the
    images that PIL decodes in the workers, chosen by the files' `positions` in the whole collection
    (see `ImageBytes`)."""
    extra = {"prefetch_factor": prefetch} if workers and prefetch else {}
    target_device = torch.device(target_device)
    if decode_device is None:
        batches = iter(DataLoader(ImageFiles(paths, preprocess), batch_size=batch_size, shuffle=False,
                                  num_workers=workers, pin_memory=target_device.type == "cuda",
                                  persistent_workers=False, **extra))
        return (pixels.to(target_device, non_blocking=True) for pixels in batches)
    pipeline = TensorPixelPipeline(spec, decode_device, target_device)
    batches = iter(DataLoader(ImageBytes(paths, preprocess, cpu_share, positions), batch_size=batch_size, shuffle=False,
                              num_workers=workers, collate_fn=collate_mixed,
                              pin_memory=torch.device(decode_device).type == "cuda", persistent_workers=False, **extra))
    return (pipeline.mixed_pixels(batch) for batch in batches)


# ----------------------------------------------------------------------------- device vectors -> host
def _start_host_copy(block: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.cuda.Event]]:
    """Queue a copy of a CUDA block into pinned host memory and an event that fires when it is there."""
    if block.device.type != "cuda":
        return block, None
    host = torch.empty(block.shape, dtype=block.dtype, pin_memory=True)
    host.copy_(block, non_blocking=True)
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(block.device))
    return host, done


def lagged_host_copies(blocks: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
    """Each block as a host numpy array, in order. CUDA blocks come out one block late: the copy of
    block i is queued behind its model, and the host waits for it only after it has queued block i+1's
    work, so the GPU always has the next batch to run. CPU blocks come out at once."""
    pending: Optional[Tuple[torch.Tensor, torch.cuda.Event]] = None
    for block in blocks:
        host, done = _start_host_copy(block)
        if pending is not None:
            pending[1].synchronize()
            yield pending[0].numpy()
            pending = None
        if done is None:
            yield host.numpy()
        else:
            pending = (host, done)
    if pending is not None:
        pending[1].synchronize()
        yield pending[0].numpy()
