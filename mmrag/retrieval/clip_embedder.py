"""CLIP image/text embedder for the dense retrieval database, built from a config.

Three ways to get a CLIP, chosen by `type`:

- `open_clip` with `model_name` (a built-in open_clip architecture such as `ViT-L-14`) and
  `pretrained` = a LOCAL weights file, or null for random init;
- `open_clip` with `model_cfg` = an explicit architecture dict (`embed_dim`, `vision_cfg`, `text_cfg`),
  e.g. the tiny ViT CLIP of `TINY_CLIP_CFG` used by tests and the default database; `pretrained` may
  point at weights saved by `train_tiny_clip` (safetensors);
- `hf_clip` with `path` = a local Hugging Face `CLIPModel` folder.

Two image paths, chosen by `decode`:

- `cpu` (default): DataLoader workers open, decode (PIL) and preprocess each image; the main process
  only runs the model. Bound by the workers' CPU time on a fast GPU (JPEG decode + bicubic resize).
- `gpu`: workers only read the files' bytes; the main process decodes each batch on the GPU with
  nvJPEG (`torchvision.io.decode_jpeg(list, device="cuda")`), then resizes, centre-crops and
  normalises there as the CLIP preprocess does (`PixelSpec`). Files that are not JPEG (PNG, ...)
  and JPEGs nvJPEG refuses (e.g. CMYK) are decoded on the CPU and moved to the GPU.
- `torchvision_cpu`: the `gpu` path with the CPU as decode device (tests; machines without nvJPEG).

The model runs on the GPU under bf16 autocast when one is present, and every output row is an
L2-normalised float32 vector. Nothing here downloads anything.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

# A ViT CLIP small enough to train on 2 CPU cores in a minute: 64-px images in 8-px patches
# (64 tokens), width 64, 2 layers per tower, a 32-token text context with the standard CLIP BPE.
TINY_CLIP_CFG: Dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

DEFAULT_EMBEDDER_CFG: Dict[str, Any] = {
    "type": "open_clip",
    "model_name": None,          # a built-in open_clip architecture name, or null to use model_cfg
    "model_cfg": TINY_CLIP_CFG,  # used when model_name is null
    "pretrained": None,          # local weights file (open_clip) or null for random init
    "path": None,                # local HF CLIPModel folder (type: hf_clip)
    "batch_size": 64,
    "num_workers": 2,
    "device": "auto",            # auto -> cuda when available, else cpu
    "bf16": True,                # autocast on CUDA only (CPU bf16 is slower on most CPUs)
    "seed": 0,                   # random init of model_cfg architectures is seeded: same config, same vectors
    "decode": "cpu",             # cpu (PIL in workers) | gpu (nvJPEG + GPU resize) | torchvision_cpu
}
DECODE_MODES = ("cpu", "gpu", "torchvision_cpu")
JPEG_MAGIC = [0xFF, 0xD8, 0xFF]  # every JPEG file starts with SOI + the next marker's 0xFF


class EmbedderConfigError(ValueError):
    """A bad embedder config: names the key and the value that is wrong."""


class ImageReadError(RuntimeError):
    """An image file that could not be opened or decoded: names the file."""


def embedder_config(cfg: Optional[Any] = None) -> Dict[str, Any]:
    """Merge `cfg` (dict / DictConfig / None) over the defaults; unknown keys are an error."""
    user = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg or {})
    unknown = sorted(set(user) - set(DEFAULT_EMBEDDER_CFG))
    if unknown:
        raise EmbedderConfigError(
            f"embedder config: unknown key '{unknown[0]}' (valid: {', '.join(sorted(DEFAULT_EMBEDDER_CFG))})"
        )
    merged = json.loads(json.dumps(DEFAULT_EMBEDDER_CFG))
    merged.update(user)
    return merged


# ----------------------------------------------------------------------------- image loading
def load_rgb(path: str | Path) -> Image.Image:
    """Open an image file as RGB; raise ImageReadError naming the file on failure."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from err


class _ImageFiles(Dataset):
    """Decoded + preprocessed images, one per path; runs inside DataLoader workers."""

    def __init__(self, paths: Sequence[str | Path], preprocess: Callable[[Image.Image], torch.Tensor]) -> None:
        self.paths = [str(p) for p in paths]
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.preprocess(load_rgb(self.paths[i]))


# ----------------------------------------------------------------------------- tensor (GPU) image path
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


def _read_bytes(path: str) -> torch.Tensor:
    from torchvision.io import read_file

    try:
        return read_file(path)
    except RuntimeError as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from err


class _ImageBytes(Dataset):
    """The raw bytes of each file (uint8, 1-D); runs inside DataLoader workers, decodes nothing."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self.paths = [str(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tuple[str, torch.Tensor]:
        return self.paths[i], _read_bytes(self.paths[i])


def _named_blobs(items: List[Tuple[str, torch.Tensor]]) -> Tuple[List[str], torch.Tensor, List[int]]:
    """Collate a batch's files into one flat byte tensor + their lengths (module level: workers pickle it).

    One tensor a batch crosses the process boundary in one shared-memory block; a list of per-file
    tensors would need one file descriptor each (and broke with 'Bad file descriptor' in testing).
    """
    return [name for name, _ in items], torch.cat([blob for _, blob in items]), [int(b.numel()) for _, b in items]


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


def decode_images(blobs: Sequence[torch.Tensor], names: Sequence[str], device: torch.device | str) -> List[torch.Tensor]:
    """Decode file bytes to RGB uint8 (3, H, W) tensors on `device`, in order. JPEGs are decoded there
    in one batch (nvJPEG on CUDA); other formats on the CPU, then moved. ImageReadError names a bad file."""
    device = torch.device(device)
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
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    mode = InterpolationMode(spec.interpolation)
    by_size: Dict[Tuple[int, int], List[int]] = {}
    for i, image in enumerate(images):
        by_size.setdefault(tuple(image.shape[-2:]), []).append(i)
    groups = []
    for indices in by_size.values():
        group = torch.stack([images[i] for i in indices]).float()
        group = TF.resize(group, list(spec.resize), interpolation=mode, antialias=spec.antialias).clamp_(0, 255).round_()
        groups.append(_center_crop(group, spec) if spec.crop is not None else group)
    if len(groups) == 1:
        out = groups[0]
    else:  # back to input order
        out = groups[0].new_empty((len(images), *groups[0].shape[1:]))
        for indices, group in zip(by_size.values(), groups):
            out[indices] = group
    mean = torch.tensor(spec.mean, device=out.device).view(1, -1, 1, 1) * 255.0
    std = torch.tensor(spec.std, device=out.device).view(1, -1, 1, 1) * 255.0
    return out.sub_(mean).div_(std)


# ----------------------------------------------------------------------------- model backends
@dataclass
class _Backend:
    """What the embedder needs from a CLIP implementation."""

    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenize: Callable[[List[str]], Dict[str, torch.Tensor]]
    encode_image: Callable[[torch.Tensor], torch.Tensor]
    encode_text: Callable[[Dict[str, torch.Tensor]], torch.Tensor]
    pixel_spec: Callable[[], PixelSpec]  # `preprocess` as tensor ops (decode: gpu | torchvision_cpu)


def _require_file(cfg: Dict[str, Any], key: str, want_dir: bool) -> Path:
    value = cfg.get(key)
    if not value:
        raise EmbedderConfigError(f"embedder config: '{key}' is required for type '{cfg['type']}'")
    path = Path(value).expanduser()
    ok = path.is_dir() if want_dir else path.is_file()
    if not ok:
        kind = "folder" if want_dir else "file"
        raise EmbedderConfigError(f"embedder config: '{key}' = {path} is not an existing {kind}")
    return path


def build_open_clip_model(cfg: Dict[str, Any]) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """The open_clip model of `cfg` (random init or the local `pretrained` weights) and its arch dict."""
    import open_clip

    name = cfg.get("model_name")
    arch = open_clip.get_model_config(name) if name else dict(cfg.get("model_cfg") or {})
    if name and arch is None:
        raise EmbedderConfigError(f"embedder config: 'model_name' = {name!r} is not an open_clip architecture")
    if not arch:
        raise EmbedderConfigError("embedder config: set 'model_name' or 'model_cfg' for type 'open_clip'")
    torch.manual_seed(int(cfg.get("seed", 0)))  # random init must be reproducible across runs/resumes
    model = open_clip.CLIP(**arch) if not name else open_clip.create_model(name, pretrained=None)
    if cfg.get("pretrained"):
        weights = _require_file(cfg, "pretrained", want_dir=False)
        model.load_state_dict(_read_state_dict(weights))
    return model.eval(), arch


def _read_state_dict(path: Path) -> Dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _open_clip_backend(cfg: Dict[str, Any]) -> _Backend:
    import open_clip

    model, arch = build_open_clip_model(cfg)
    image_size = arch["vision_cfg"].get("image_size", 224)
    preprocess = open_clip.image_transform(image_size, is_train=False)
    context = arch.get("text_cfg", {}).get("context_length", 77)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context)
    return _Backend(
        model=model,
        preprocess=preprocess,
        tokenize=lambda texts: {"text": tokenizer(texts)},
        encode_image=lambda pixels: model.encode_image(pixels),
        encode_text=lambda tokens: model.encode_text(tokens["text"]),
        pixel_spec=lambda: pixel_spec_from_transform(preprocess),
    )


def _hf_clip_backend(cfg: Dict[str, Any]) -> _Backend:
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    path = _require_file(cfg, "path", want_dir=True)
    model = CLIPModel.from_pretrained(str(path), local_files_only=True).eval()
    processor = CLIPImageProcessor.from_pretrained(str(path), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    max_len = int(model.config.text_config.max_position_embeddings)

    def tokenize(texts: List[str]) -> Dict[str, torch.Tensor]:
        out = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        return dict(out)

    return _Backend(
        model=model,
        preprocess=lambda img: processor(images=img, return_tensors="pt")["pixel_values"][0],
        tokenize=tokenize,
        encode_image=lambda pixels: _as_tensor(model.get_image_features(pixel_values=pixels)),
        encode_text=lambda tokens: _as_tensor(model.get_text_features(**tokens)),
        pixel_spec=lambda: pixel_spec_from_hf(processor),
    )


def _as_tensor(out: Any) -> torch.Tensor:
    """transformers 5 may return a ModelOutput where 4.x returned the tensor."""
    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output if getattr(out, "pooler_output", None) is not None else out[0]


_BACKENDS = {"open_clip": _open_clip_backend, "hf_clip": _hf_clip_backend}


# ----------------------------------------------------------------------------- the embedder
class ClipEmbedder:
    """Encodes image files and texts into L2-normalised float32 vectors (one row per input)."""

    def __init__(self, cfg: Optional[Any] = None) -> None:
        self.cfg = embedder_config(cfg)
        kind = self.cfg["type"]
        if kind not in _BACKENDS:
            raise EmbedderConfigError(f"embedder config: 'type' = {kind!r}; expected one of {sorted(_BACKENDS)}")
        self.backend = _BACKENDS[kind](self.cfg)
        self.device = self._pick_device(self.cfg["device"])
        self.backend.model.to(self.device)
        self._decode_device(self.cfg["decode"])  # a bad or impossible `decode` fails here, not mid-run

    def _decode_device(self, decode: str) -> Optional[torch.device]:
        """Where the tensor path decodes for `decode` (None: PIL in the workers)."""
        if decode not in DECODE_MODES:
            raise EmbedderConfigError(f"embedder config: 'decode' = {decode!r}; expected one of {list(DECODE_MODES)}")
        if decode == "cpu":
            return None
        if decode == "torchvision_cpu":
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise EmbedderConfigError("embedder config: 'decode' = 'gpu' needs a CUDA device and this machine has "
                                      "none; use decode: cpu (PIL in DataLoader workers)")
        return self.device if self.device.type == "cuda" else torch.device("cuda")

    @staticmethod
    def _pick_device(name: str) -> torch.device:
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(name)

    @property
    def dim(self) -> int:
        return int(self.encode_texts(["a"]).shape[1])

    def _autocast(self):
        use = self.cfg["bf16"] and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=use)

    @torch.inference_mode()
    def _features(self, fn: Callable, batch: Any) -> torch.Tensor:
        """L2-normalised float32 rows, left on the device (no host sync)."""
        with self._autocast():
            feats = fn(batch).float()
        return torch.nn.functional.normalize(feats, dim=-1)

    def _encode(self, fn: Callable, batch: Any) -> np.ndarray:
        return self._features(fn, batch).cpu().numpy().astype(np.float32)

    def image_batches(self, paths: Sequence[str | Path], num_workers: Optional[int] = None,
                      decode: Optional[str] = None) -> Iterator[np.ndarray]:
        """Yield embedding blocks of `batch_size` rows, in path order. `decode` (default: the config's)
        picks PIL in the workers (`cpu`) or the tensor path (`gpu`, `torchvision_cpu`)."""
        workers = self.cfg["num_workers"] if num_workers is None else num_workers
        decode_device = self._decode_device(self.cfg["decode"] if decode is None else decode)
        if decode_device is not None:
            yield from self._tensor_image_batches(paths, workers, decode_device)
            return
        loader = DataLoader(
            _ImageFiles(paths, self.backend.preprocess),
            batch_size=self.cfg["batch_size"],
            shuffle=False,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        for pixels in loader:
            pixels = pixels.to(self.device, non_blocking=True)
            yield self._encode(self.backend.encode_image, pixels)

    def _tensor_image_batches(self, paths: Sequence[str | Path], workers: int,
                              decode_device: torch.device) -> Iterator[np.ndarray]:
        """Workers read bytes; this process decodes + preprocesses each batch on `decode_device`.

        Results are copied to the host one batch late: the copy waits for the GPU, and by then the
        next batch's decode and forward are queued, so host work overlaps the GPU's.
        """
        spec = self.backend.pixel_spec()
        loader = DataLoader(_ImageBytes(paths), batch_size=self.cfg["batch_size"], shuffle=False,
                            num_workers=workers, collate_fn=_named_blobs, persistent_workers=False)
        pending: Optional[torch.Tensor] = None
        for names, flat, lengths in loader:
            blobs = list(torch.split(flat, lengths))
            pixels = preprocess_tensors(decode_images(blobs, names, decode_device), spec)
            feats = self._features(self.backend.encode_image, pixels.to(self.device, non_blocking=True))
            if pending is not None:
                yield pending.cpu().numpy()
            pending = feats
        if pending is not None:
            yield pending.cpu().numpy()

    def encode_images(self, paths: Sequence[str | Path], progress: bool = False, num_workers: Optional[int] = None,
                      decode: Optional[str] = None) -> np.ndarray:
        """(len(paths), dim) float32, L2-normalised. `decode` overrides the config's (see `image_batches`)."""
        if not paths:
            return np.zeros((0, self.dim), dtype=np.float32)
        blocks = self.image_batches(paths, num_workers, decode)
        total = math.ceil(len(paths) / self.cfg["batch_size"])
        blocks = tqdm(blocks, total=total, desc="embed images", unit="batch", disable=not progress)
        return np.concatenate(list(blocks), axis=0)

    def encode_pil(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed already-decoded images (e.g. augmented copies), one batch."""
        pixels = torch.stack([self.backend.preprocess(img.convert("RGB")) for img in images]).to(self.device)
        return self._encode(self.backend.encode_image, pixels)

    def encode_texts(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised; batched by `batch_size`."""
        size = self.cfg["batch_size"]
        blocks = []
        for start in tqdm(range(0, len(texts), size), desc="embed texts", unit="batch", disable=not progress):
            tokens = self.backend.tokenize(list(texts[start:start + size]))
            tokens = {k: v.to(self.device) for k, v in tokens.items()}
            blocks.append(self._encode(self.backend.encode_text, tokens))
        if not blocks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(blocks, axis=0)


# ----------------------------------------------------------------------------- tiny CLIP training
@dataclass
class TinyClipTrainResult:
    weights: Path
    steps: int
    final_loss: float
    seconds: float


def _shuffled_pairs(pairs: List[Tuple[str, str]], seed: int) -> Iterator[Tuple[str, str]]:
    rng = random.Random(seed)
    while True:
        order = list(pairs)
        rng.shuffle(order)
        yield from order


def train_tiny_clip(
    pairs: Sequence[Tuple[str | Path, str]],
    out_path: str | Path,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 1e-3,
    model_cfg: Optional[Dict[str, Any]] = None,
    seed: int = 0,
    progress: bool = True,
) -> TinyClipTrainResult:
    """Train a random-init open_clip arch (default TINY_CLIP_CFG) contrastively on (image path, caption)
    pairs for `steps` steps on the CPU; save the weights (safetensors) to `out_path`.

    Images are decoded once up front (the world's images are small), captions tokenised per batch.
    """
    import time

    from safetensors.torch import save_file

    start = time.time()
    cfg = embedder_config({"model_cfg": model_cfg or TINY_CLIP_CFG, "device": "cpu", "seed": seed})
    backend = _open_clip_backend(cfg)
    model = backend.model.train()
    pixels = {str(p): backend.preprocess(load_rgb(p)) for p, _ in pairs}
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=lr, total_steps=steps, pct_start=0.1)
    stream = _shuffled_pairs([(str(p), c) for p, c in pairs], seed)
    loss_value = float("nan")
    for _ in tqdm(range(steps), desc="train tiny clip", disable=not progress):
        batch = [next(stream) for _ in range(min(batch_size, len(pairs)))]
        loss = _clip_loss(model, backend, torch.stack([pixels[p] for p, _ in batch]), [c for _, c in batch])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        loss_value = float(loss.detach())
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_path))
    return TinyClipTrainResult(out_path, steps, loss_value, time.time() - start)


def _clip_loss(model: torch.nn.Module, backend: _Backend, pixels: torch.Tensor, captions: List[str]) -> torch.Tensor:
    """Symmetric InfoNCE over the batch. Duplicate captions in a batch are soft-labelled as matches."""
    img = torch.nn.functional.normalize(backend.encode_image(pixels), dim=-1)
    txt = torch.nn.functional.normalize(backend.encode_text(backend.tokenize(captions)), dim=-1)
    logits = model.logit_scale.exp() * img @ txt.t()
    same = torch.tensor([[a == b for b in captions] for a in captions], dtype=torch.float32)
    target = same / same.sum(dim=1, keepdim=True)
    loss_i = torch.nn.functional.cross_entropy(logits, target)
    loss_t = torch.nn.functional.cross_entropy(logits.t(), target)
    return (loss_i + loss_t) / 2


# ----------------------------------------------------------------------------- retrieval quality
def _perturbed_copy(img: Image.Image, rng: random.Random) -> Image.Image:
    """A crop of 75-90% of each side at a random place, slightly brightened/darkened: the same picture."""
    w, h = img.size
    cw, ch = int(w * rng.uniform(0.75, 0.9)), int(h * rng.uniform(0.75, 0.9))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    crop = img.crop((left, top, left + cw, top + ch)).resize((w, h))
    factor = rng.uniform(0.85, 1.15)
    return Image.eval(crop, lambda v: min(255, int(v * factor)))


def recall_at_k(scores: np.ndarray, ks: Sequence[int] = (1, 5)) -> Dict[str, float]:
    """Recall@k when query i's only relevant item is column i of `scores` (nq, n)."""
    target = np.diag(scores)[:, None]
    rank = (scores > target).sum(axis=1)  # number of items scored strictly above the right one
    return {f"R@{k}": float((rank < k).mean()) for k in ks}


def retrieval_recall(embedder: ClipEmbedder, image_paths: Sequence[str | Path], captions: Sequence[str], seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Held-out retrieval quality among `image_paths`:
    text->image (caption i should find image i) and image->image (a cropped, re-lit copy of image i
    should find image i). Identical captions count as ties against the right image (ranked above it)."""
    rng = random.Random(seed)
    img_vecs = embedder.encode_images(list(image_paths), num_workers=0)
    txt_vecs = embedder.encode_texts(list(captions))
    copies = [_perturbed_copy(load_rgb(p), rng) for p in image_paths]
    copy_vecs = np.concatenate([embedder.encode_pil(copies[i:i + 256]) for i in range(0, len(copies), 256)])
    return {
        "text_to_image": recall_at_k(txt_vecs @ img_vecs.T),
        "image_to_image": recall_at_k(copy_vecs @ img_vecs.T),
    }
