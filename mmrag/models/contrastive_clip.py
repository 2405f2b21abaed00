"""An open_clip CLIP trained from scratch with a contrastive loss (the `clip_pretrain` task's model).

`model.open_clip` is an open_clip model config (embed_dim, vision_cfg, text_cfg), random init. The loss:
- `siglip` (default): the pairwise sigmoid loss, a learned temperature t and bias b; every (image i,
  text j) pair is a binary problem: -log sigmoid(z_ij (t cos_ij + b)), z = +1 for a positive pair, -1
  otherwise. It needs no batch-wide softmax, which is why it holds up at small batch.
- `infonce`: CLIP's symmetric softmax cross-entropy (learned temperature), several positives per row
  sharing the target mass.
Positives are given by the batch (`positives`, B x B): the same picture, or the same text.
Optionally a linear presence head over the image embedding with the class-balanced multi-label loss
(`presence_weight` > 0; the weights come with the batch, see datasets/image_text.py).

forward returns {"loss_sum", "n_tokens"}: the loss summed over the batch's pairs (rows), and the number
of pairs, which the runner sums over the global batch and divides by (`loss_units`).

`save_trainable(folder)` writes open_clip's own local format: `open_clip_config.json` ({"model_cfg",
"preprocess_cfg"}) + `open_clip_model.safetensors` (the CLIP state dict), which
`open_clip.create_model("local-dir:<folder>")`, the `open_clip` vision tower and ClipEmbedder load
(model_name: "local-dir:<folder>", path/pretrained: <folder>/open_clip_model.safetensors).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict

import torch
from omegaconf import OmegaConf
from torch import nn

from mmrag.common.errors import ConfigError
from mmrag.common.paths import require_path
from mmrag.common.registry import MODELS

LOSSES = ("siglip", "infonce")
WEIGHTS_FILE = "open_clip_model.safetensors"
CONFIG_FILE = "open_clip_config.json"
PRESENCE_FILE = "presence_head.safetensors"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # open_clip.image_transform's default normalisation
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's clamp of the learned temperature

# A ViT CLIP small enough for a few CPU minutes (train_configs/clip_world_small.yaml): 48-px images in
# 8-px patches (36 tokens), width 128, 3 + 2 layers; ~7.4M weights, 6.3M of them the BPE token table.
SMALL_CLIP_CFG: Dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 48, "patch_size": 8, "width": 128, "layers": 3, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 2},
}


def siglip_loss_sum(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Sum over every (i, j) of -log sigmoid(z_ij * logits_ij), z = +1 where positive, else -1."""
    signs = positives.to(logits.dtype) * 2 - 1
    return -nn.functional.logsigmoid(signs * logits).sum()


def infonce_loss_sum(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Sum over rows of the mean of the image->text and text->image cross-entropies, each row's
    positives sharing its target mass equally."""
    pos = positives.to(logits.dtype)
    image_to_text = nn.functional.cross_entropy(logits, pos / pos.sum(1, keepdim=True), reduction="sum")
    text_to_image = nn.functional.cross_entropy(logits.t(), pos.t() / pos.t().sum(1, keepdim=True), reduction="sum")
    return (image_to_text + text_to_image) / 2


def presence_loss_sum(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted binary cross-entropy summed over rows, averaged over classes."""
    bce = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (weights * bce).sum() / logits.shape[1]


@MODELS.register("contrastive_clip")
class ContrastiveClip(nn.Module):
    DEFAULTS: Dict[str, Any] = {
        "arch": "contrastive_clip",
        "open_clip": {},             # open_clip model config (embed_dim, vision_cfg, text_cfg); {}: SMALL_CLIP_CFG
        "loss": "siglip",            # siglip | infonce
        "init_logit_scale": None,    # null: log(10) for siglip (SigLIP's), log(1/0.07) for infonce (CLIP's)
        "init_logit_bias": -10.0,    # siglip only: SigLIP's start, every pair looks negative
        "presence_weight": 0.0,      # > 0: add the balanced presence loss (needs presence_labels in the data)
        "checkpoint": None,          # a folder save_trainable wrote (output_dir/final): start from / evaluate it
    }

    @classmethod
    def default_config(cls, user_cfg) -> Dict[str, Any]:
        return OmegaConf.create(cls.DEFAULTS)

    def __init__(self, cfg, num_classes: int = 0) -> None:
        super().__init__()
        import open_clip

        self.cfg = cfg
        if cfg.loss not in LOSSES:
            raise ConfigError(f"model.loss={cfg.loss!r} is not one of {', '.join(LOSSES)}")
        if cfg.presence_weight > 0 and num_classes < 1:
            raise ConfigError("model.presence_weight > 0 needs class labels: set presence_labels: true on a "
                              "world dataset")
        self.arch = self._arch(cfg)
        self.clip = open_clip.CLIP(**self.arch)
        self.presence = nn.Linear(self.arch["embed_dim"], num_classes) if cfg.presence_weight > 0 else None
        vision = self.arch["vision_cfg"]
        self.image_size = int(vision.get("image_size", 224))
        self.context_length = int(self.arch["text_cfg"].get("context_length", 77))
        if cfg.checkpoint:
            self.load_trainable(cfg.checkpoint)

    @staticmethod
    def _arch(cfg) -> Dict[str, Any]:
        """The open_clip constructor arguments, temperature (and bias) initialisation included, so that
        the saved config rebuilds the same parameters (SigLIP's `logit_bias` exists only when set)."""
        arch = OmegaConf.to_container(cfg.open_clip, resolve=True) if len(cfg.open_clip) else json.loads(
            json.dumps(SMALL_CLIP_CFG))
        siglip = cfg.loss == "siglip"
        scale = cfg.init_logit_scale
        arch["init_logit_scale"] = float(scale if scale is not None else (math.log(10) if siglip else math.log(1 / 0.07)))
        if siglip:
            arch["init_logit_bias"] = float(cfg.init_logit_bias)
        return arch

    # ------------------------------------------------------------------ embeddings
    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.clip.encode_image(pixels, normalize=normalize)

    def encode_text(self, text_ids: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.clip.encode_text(text_ids, normalize=normalize)

    def logits(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """t * cos + b for normalised embeddings (rows: images, columns: texts)."""
        out = self.clip.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp() * image @ text.t()
        return out + self.clip.logit_bias if self.clip.logit_bias is not None else out

    # ------------------------------------------------------------------ training
    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        device = self.clip.logit_scale.device
        raw = self.encode_image(batch["pixels"].to(device), normalize=False)
        image = nn.functional.normalize(raw, dim=-1)
        text = self.encode_text(batch["text_ids"].to(device))
        logits = self.logits(image, text).float()
        positives = batch["positives"].to(device)
        loss = siglip_loss_sum(logits, positives) if self.cfg.loss == "siglip" else infonce_loss_sum(logits, positives)
        if self.presence is not None and "presence_targets" in batch:  # a dataset without labels adds none
            presence = self.presence(raw).float()
            loss = loss + self.cfg.presence_weight * presence_loss_sum(
                presence, batch["presence_targets"].to(device), batch["presence_weights"].to(device))
        return {"loss_sum": loss, "n_tokens": torch.tensor(batch["pixels"].shape[0])}

    @staticmethod
    def loss_units(batch: Dict[str, torch.Tensor]) -> int:
        """What the loss is averaged over: the image-text pairs of the batch."""
        return int(batch["pixels"].shape[0])

    # ------------------------------------------------------------------ persistence
    def open_clip_config(self) -> Dict[str, Any]:
        preprocess = {"size": self.image_size, "mode": "RGB", "mean": list(OPENAI_MEAN), "std": list(OPENAI_STD),
                      "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}
        return {"model_cfg": self.arch, "preprocess_cfg": preprocess}

    def save_trainable(self, out_dir: str | Path) -> Path:
        """open_clip's local format (see the module docstring); the presence head beside it."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().cpu().contiguous() for k, v in self.clip.state_dict().items()}
        _atomic(out / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
        _atomic(out / CONFIG_FILE, lambda tmp: tmp.write_text(json.dumps(self.open_clip_config(), indent=2)))
        if self.presence is not None:
            head = {k: v.detach().float().cpu().contiguous() for k, v in self.presence.state_dict().items()}
            _atomic(out / PRESENCE_FILE, lambda tmp: save_file(head, str(tmp)))
        return out


    def load_trainable(self, folder: str | Path) -> None:
        """The weights save_trainable wrote (open_clip's reader; the presence head when this model has one)."""
        import open_clip
        from safetensors.torch import load_file

        folder = require_path("model.checkpoint", folder, "folder with open_clip_model.safetensors")
        open_clip.load_checkpoint(self.clip, str(require_path("model.checkpoint", folder / WEIGHTS_FILE, "weights file")))
        if self.presence is not None:
            head = require_path("model.checkpoint", folder / PRESENCE_FILE, "presence head weights (presence_weight > 0)")
            self.presence.load_state_dict(load_file(str(head)))


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
