"""CLIP image/text embedder for the dense retrieval database, built from a config.

Three ways to get a CLIP, chosen by `type`:

- `open_clip` with `model_name` (a built-in open_clip architecture such as `ViT-L-14`) and
  `pretrained` = a LOCAL weights file, or null for random init;
- `open_clip` with `model_cfg` = an explicit architecture dict (`embed_dim`, `vision_cfg`, `text_cfg`),
  e.g. the tiny ViT CLIP of `TINY_CLIP_CFG` used by tests and the default database;
- `open_clip` with `model_name: "local-dir:<folder>"` and `pretrained: <folder>/open_clip_model.safetensors`:
  a CLIP trained by the `clip_pretrain` task (mmrag/tasks/clip_pretrain.py), which is also what
  create_index's `tiny_clip.steps` trains;
- `hf_clip` with `path` = a local Hugging Face `CLIPModel` folder.

Three image paths, chosen by `decode` (the loading itself lives in `image_pipeline.py`):

- `cpu` (default): DataLoader workers open, decode (PIL) and preprocess each image; the main process
  only runs the model. Bound by the workers' CPU time on a fast GPU (JPEG decode + bicubic resize).
- `gpu`: workers only read the files' bytes; the main process decodes each batch on the GPU with
  nvJPEG (`torchvision.io.decode_jpeg(list, device="cuda")`), then resizes, centre-crops and
  normalises there as the CLIP preprocess does (`PixelSpec`), on a side CUDA stream, so batch i+1 is
  decoded while the model runs batch i. Files that are not JPEG (PNG, ...) and JPEGs nvJPEG refuses
  (e.g. CMYK) are decoded on the CPU and moved to the GPU.
- `torchvision_cpu`: the `gpu` path with the CPU as decode device (tests; machines without nvJPEG).

Precision: on CUDA with `bf16` on, the image tower's weights are cast to bf16 once (`image_weights:
auto`) and run without autocast; the text tower runs under bf16 autocast. `compile: true`
torch.compiles the image encoder. On the CPU everything is float32 unless `image_weights: bfloat16`.
Every output row is an L2-normalised float32 vector; results reach the host one batch late through
pinned memory, so the host never waits for the batch it has just queued. Nothing here downloads anything.
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
from tqdm import tqdm

from mmrag.models.clip import load_hf_clip, load_open_clip
from mmrag.processors.image_processing import open_rgb
from mmrag.retrieval.image_pipeline import (
    EmbedderConfigError,
    PixelSpec,
    lagged_host_copies,
    pixel_spec_from_hf,
    pixel_spec_from_transform,
    start_pixel_loader,
)

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
    "bf16": True,                # CUDA only: bf16 image weights (see image_weights), text under autocast
    "seed": 0,                   # random init of model_cfg architectures is seeded: same config, same vectors
    "decode": "cpu",             # cpu (PIL in workers) | gpu (nvJPEG + GPU resize) | torchvision_cpu
    "image_weights": "auto",     # auto (bf16 on CUDA when bf16 is on, else float32) | float32 | bfloat16
    "compile": False,            # torch.compile the image encoder (first batch compiles; partial batches padded)
    "cpu_decode_share": 0.0,     # decode gpu | torchvision_cpu: this share of the images is decoded by PIL in the
                                 # workers instead (spread evenly), leaving the GPU more time for the model
}
DECODE_MODES = ("cpu", "gpu", "torchvision_cpu")
IMAGE_WEIGHT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def embedder_config(cfg: Optional[Any] = None) -> Dict[str, Any]:
    """Merge `cfg` (dict / DictConfig / None) over the defaults; unknown keys and bad values are an error."""
    user = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg or {})
    unknown = sorted(set(user) - set(DEFAULT_EMBEDDER_CFG))
    if unknown:
        raise EmbedderConfigError(
            f"embedder config: unknown key '{unknown[0]}' (valid: {', '.join(sorted(DEFAULT_EMBEDDER_CFG))})"
        )
    merged = json.loads(json.dumps(DEFAULT_EMBEDDER_CFG))
    merged.update(user)
    if merged["image_weights"] not in ("auto", *IMAGE_WEIGHT_DTYPES):
        raise EmbedderConfigError(f"embedder config: 'image_weights' = {merged['image_weights']!r}; "
                                  f"expected one of {['auto', *IMAGE_WEIGHT_DTYPES]}")
    if not isinstance(merged["compile"], bool):
        raise EmbedderConfigError(f"embedder config: 'compile' = {merged['compile']!r}; expected true or false")
    share = merged["cpu_decode_share"]
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise EmbedderConfigError(f"embedder config: 'cpu_decode_share' = {share!r}; expected a number in [0, 1]")
    return merged


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
    image_modules: Tuple[torch.nn.Module, ...]  # what `encode_image` runs: cast to the image weight dtype


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
    if name and str(name).startswith("local-dir:") and not (Path(name[len("local-dir:"):]) / "open_clip_config.json").is_file():
        raise EmbedderConfigError(f"embedder config: 'model_name' = {name}: no open_clip_config.json in that folder "
                                  "(a world CLIP is trained by `python train.py --cfg-path train_configs/clip_world_small.yaml`)")
    arch = open_clip.get_model_config(name) if name else dict(cfg.get("model_cfg") or {})
    if name and arch is None:
        raise EmbedderConfigError(f"embedder config: 'model_name' = {name!r} is not an open_clip architecture")
    if not arch:
        raise EmbedderConfigError("embedder config: set 'model_name' or 'model_cfg' for type 'open_clip'")
    weights = _require_file(cfg, "pretrained", want_dir=False) if cfg.get("pretrained") else None
    torch.manual_seed(int(cfg.get("seed", 0)))  # random init must be reproducible across runs/resumes
    return load_open_clip(model_name=name, arch=None if name else arch, weights=weights), arch


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
        image_modules=(model.visual,),
    )


def _hf_clip_backend(cfg: Dict[str, Any]) -> _Backend:
    from transformers import AutoTokenizer, CLIPImageProcessor

    path = _require_file(cfg, "path", want_dir=True)
    model = load_hf_clip(path)
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
        image_modules=(model.vision_model, model.visual_projection),
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
        self.image_dtype = self._image_weight_dtype(self.cfg["image_weights"])
        for module in self.backend.image_modules:  # cast once, not per batch as autocast does
            module.to(self.image_dtype)
        # fp32 image weights on CUDA keep the old path: bf16 autocast around them
        self._image_autocast_on = bool(self.cfg["bf16"]) and self.device.type == "cuda" and self.image_dtype == torch.float32
        self._compiled_image_features: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
        self._decode_device(self.cfg["decode"])  # a bad or impossible `decode` fails here, not mid-run
        if self.cfg["compile"]:
            self.compile_image_model()

    def _image_weight_dtype(self, name: str) -> torch.dtype:
        if name == "auto":
            return torch.bfloat16 if self.cfg["bf16"] and self.device.type == "cuda" else torch.float32
        return IMAGE_WEIGHT_DTYPES[name]

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

    # ------------------------------------------------------------------------- images
    def _eager_image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self._image_autocast_on):
            feats = self.backend.encode_image(pixels.to(self.image_dtype))
        return torch.nn.functional.normalize(feats.float(), dim=-1)

    def compile_image_model(self) -> None:
        """torch.compile the image encoder (compiled by the first batch, minutes for a ViT-L). One batch
        shape is compiled: shorter batches are zero-padded to `batch_size`, longer ones split."""
        if self._compiled_image_features is None:
            self._compiled_image_features = torch.compile(self._eager_image_features, dynamic=False)
        self.cfg["compile"] = True

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """L2-normalised float32 rows, left on the device (no host sync), for preprocessed pixels (B, 3, h, w)."""
        if self._compiled_image_features is None:
            with torch.inference_mode():
                return self._eager_image_features(pixels.to(self.device, non_blocking=True))
        return self._compiled_in_batches(pixels)

    @torch.no_grad()
    def _compiled_in_batches(self, pixels: torch.Tensor) -> torch.Tensor:
        """The compiled graph on exactly `batch_size` rows at a time. no_grad, not inference_mode: the graph
        is guarded on its input's dispatch keys, and an inference tensor (padding made in inference mode,
        a caller's) after a normal one would recompile it."""
        pixels = pixels.to(self.device, non_blocking=True)
        if pixels.is_inference():
            pixels = pixels.clone()
        size, blocks = int(self.cfg["batch_size"]), []
        for chunk in pixels.split(size):
            rows = chunk.shape[0]
            if rows < size:  # padded rows cost one batch's compute once; a recompile costs far more
                chunk = torch.cat([chunk, chunk.new_zeros((size - rows, *chunk.shape[1:]))])
            blocks.append(self._compiled_image_features(chunk)[:rows])
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks)

    def pixel_batches(self, paths: Sequence[str | Path], num_workers: Optional[int] = None,
                      decode: Optional[str] = None, positions: Optional[Sequence[int]] = None) -> Iterator[torch.Tensor]:
        """Preprocessed float32 pixel batches (up to `batch_size`, 3, h, w) on the model's device, in path
        order, without running the model (on CUDA possibly still being computed: stream-ordered).
        `decode` (default: the config's) picks PIL in the workers (`cpu`) or the tensor path (`gpu`,
        `torchvision_cpu`). `positions`: each path's index in the whole collection (default 0..n-1); with
        `cpu_decode_share` it picks the files PIL decodes, so a part of a collection (one process's
        shards) gets the pixels the whole would."""
        workers = self.cfg["num_workers"] if num_workers is None else num_workers
        decode_device = self._decode_device(self.cfg["decode"] if decode is None else decode)
        return start_pixel_loader(paths, self.backend.preprocess, self.backend.pixel_spec(), decode_device, self.device,
                                  self.cfg["batch_size"], workers, float(self.cfg["cpu_decode_share"]),
                                  positions=positions)

    def image_batches(self, paths: Sequence[str | Path], num_workers: Optional[int] = None,
                      decode: Optional[str] = None, positions: Optional[Sequence[int]] = None) -> Iterator[np.ndarray]:
        """Yield embedding blocks of `batch_size` rows, in path order (`decode`, `positions` as in
        `pixel_batches`). On CUDA each block reaches the host one batch late, so the GPU never waits for the host."""
        features = (self.image_features(pixels) for pixels in self.pixel_batches(paths, num_workers, decode, positions))
        yield from lagged_host_copies(features)

    def encode_images(self, paths: Sequence[str | Path], progress: bool = False, num_workers: Optional[int] = None,
                      decode: Optional[str] = None, positions: Optional[Sequence[int]] = None) -> np.ndarray:
        """(len(paths), dim) float32, L2-normalised. `decode` overrides the config's (see `image_batches`)."""
        if not paths:
            return np.zeros((0, self.dim), dtype=np.float32)
        blocks = self.image_batches(paths, num_workers, decode, positions)
        total = math.ceil(len(paths) / self.cfg["batch_size"])
        blocks = tqdm(blocks, total=total, desc="embed images", unit="batch", disable=not progress)
        return np.concatenate(list(blocks), axis=0)

    def encode_pil(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Embed already-decoded images (e.g. augmented copies), one batch."""
        pixels = torch.stack([self.backend.preprocess(img.convert("RGB")) for img in images])
        return self.image_features(pixels).cpu().numpy()

    # ------------------------------------------------------------------------- texts
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
    copies = [_perturbed_copy(open_rgb(p), rng) for p in image_paths]
    copy_vecs = np.concatenate([embedder.encode_pil(copies[i:i + 256]) for i in range(0, len(copies), 256)])
    return {
        "text_to_image": recall_at_k(txt_vecs @ img_vecs.T),
        "image_to_image": recall_at_k(copy_vecs @ img_vecs.T),
    }
