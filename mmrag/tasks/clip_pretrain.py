"""`clip_pretrain`: train an open_clip image/text model from scratch on a world's image-text pairs
(captions, region descriptions, entity names: datasets/image_text.py) with the SigLIP or InfoNCE loss
(models/contrastive_clip.py), through the one runner:

    python train.py --cfg-path train_configs/clip_world_small.yaml

The final weights land in `<output_dir>/final/` in open_clip's own format; evaluation (on
`evaluation.split`: `val`, a slice of the train images, for choosing settings; `test` for the report):
- zero-shot entity recognition: every ground-truth box of the split's images, square-cropped as in
  training, classified among the names of the classes present in the split by cosine with
  `name_template` prompts; top-1 accuracy over crops and its mean over classes;
- image-text retrieval among the split's images and their captions, both ways, R@1 / R@5 (an image's
  right answers are all its captions; ties with a wrong item count against).
It writes `results.json` and `results.png` to the output folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from omegaconf import OmegaConf

from mmrag.common.errors import ConfigError
from mmrag.common.jsonl import write_json
from mmrag.common.registry import MODELS, TASKS
from mmrag.datasets.image_text import ImageTextBuilder, ImageTextCollator, WorldSplit, crop_pixels
from mmrag.processors.image_processing import open_rgb
from mmrag.metrics.bootstrap import bootstrap_mean
from mmrag.models.contrastive_clip import WEIGHTS_FILE
from mmrag.tasks.base import Task


def ranks(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Per query (row): irrelevant items scoring at least as high as its best relevant item (ties count against)."""
    best = np.where(relevant, scores, -np.inf).max(axis=1, keepdims=True)
    return ((scores >= best) & ~relevant).sum(axis=1)


def recall_at_k(scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 5)) -> Dict[str, float]:
    """Recall@k of queries (rows) with possibly several relevant items: a query counts at k when fewer
    than k irrelevant items score at least as high as its best relevant item."""
    rank = ranks(scores, relevant)
    return {f"R@{k}": float((rank < k).mean()) for k in ks}


def _interval(hits: np.ndarray) -> List[float]:
    """95% percentile-bootstrap interval of a mean of 0/1 outcomes."""
    ci = bootstrap_mean(hits.astype(np.float64))
    return [round(ci["low"], 4), round(ci["high"], 4)]


def zero_shot_accuracy(image_emb: np.ndarray, class_emb: np.ndarray, truth: np.ndarray) -> Dict[str, float]:
    """Top-1 accuracy of the highest-cosine class (rows of class_emb), over items and averaged per class."""
    pred = (image_emb @ class_emb.T).argmax(axis=1)
    correct = pred == truth
    per_class = [correct[truth == c].mean() for c in np.unique(truth)]
    return {"top1": float(correct.mean()), "top1_ci95": _interval(correct),
            "top1_class_mean": float(np.mean(per_class)), "n_items": int(len(truth)),
            "n_classes": int(class_emb.shape[0]), "chance": 1.0 / class_emb.shape[0]}


@TASKS.register("clip_pretrain")
class ClipPretrainTask(Task):
    DEFAULTS = {
        "run": {},
        "evaluation": {
            "split": "test",        # test (the report) | val (the train slice settings are chosen on)
            "dataset": None,        # the datasets entry whose world is evaluated (default: the first with a world)
            "batch_size": 256,
            "plot": True,
        },
    }

    def _classes(self, cfg) -> int:
        return max([ImageTextBuilder.num_classes(ds) for ds in cfg.datasets.values()] or [0])

    def build_model(self, cfg):
        return MODELS.get(cfg.model.arch)(cfg.model, num_classes=self._classes(cfg))

    def build_processor(self, cfg, model) -> ImageTextCollator:
        return ImageTextCollator(model.image_size, model.context_length)

    def collate_fn(self, processor: ImageTextCollator):
        return lambda dataset, indices: processor.collate([dataset[i] for i in indices], dataset)

    # ------------------------------------------------------------------ evaluation
    def _eval_dataset(self, cfg):
        name = cfg.evaluation.dataset or next((n for n, ds in cfg.datasets.items() if ds.world), None)
        if name is None or name not in cfg.datasets or not cfg.datasets[name].world:
            raise ConfigError(f"evaluation.dataset={name!r}: clip_pretrain evaluates a datasets entry with a 'world'")
        return cfg.datasets[name]

    def evaluate(self, model, cfg, out_dir) -> Dict[str, Any]:
        ds, ev = self._eval_dataset(cfg), cfg.evaluation
        world = WorldSplit(ds.world, ev.split, ds.val_fraction)
        encoder = _Encoder(model, ImageTextCollator(model.image_size, model.context_length), ev.batch_size)
        results = {"split": ev.split, "world": str(ds.world),
                   "zero_shot": zero_shot_entities(encoder, world, ds.name_template, ds.crop_margin),
                   "retrieval": caption_retrieval(encoder, world)}
        out = Path(out_dir)
        write_json(out / "results.json", results)
        if ev.plot:
            plot_results(results, out / "results.png")
        return results


class _Encoder:
    """Normalised embeddings of PIL images and texts with the model, in batches, without gradients."""

    def __init__(self, model, processor: ImageTextCollator, batch_size: int) -> None:
        self.model, self.processor, self.batch_size = model, processor, batch_size
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def images(self, images: List[Any]) -> np.ndarray:
        self.model.eval()
        blocks = []
        for start in range(0, len(images), self.batch_size):
            pixels = torch.stack([self.processor.transform(im) for im in images[start:start + self.batch_size]])
            blocks.append(self.model.encode_image(pixels.to(self.device)).float().cpu().numpy())
        return np.concatenate(blocks) if blocks else np.zeros((0, 1), np.float32)

    @torch.no_grad()
    def texts(self, texts: Sequence[str]) -> np.ndarray:
        self.model.eval()
        blocks = []
        for start in range(0, len(texts), self.batch_size):
            ids = self.processor.tokenizer(list(texts[start:start + self.batch_size]))
            blocks.append(self.model.encode_text(ids.to(self.device)).float().cpu().numpy())
        return np.concatenate(blocks) if blocks else np.zeros((0, 1), np.float32)


def zero_shot_entities(encoder: _Encoder, world: WorldSplit, name_template: str, margin: float) -> Dict[str, float]:
    crops, truth = [], []
    for image_id, boxes in world.boxes.items():
        image = open_rgb(world.path(image_id))
        for box, c in boxes:
            crops.append(crop_pixels(image, box, margin))
            truth.append(c)
    present = sorted(set(truth))
    index = {c: i for i, c in enumerate(present)}
    class_emb = encoder.texts([name_template.format(name=world.class_names[c]) for c in present])
    return zero_shot_accuracy(encoder.images(crops), class_emb, np.array([index[c] for c in truth]))


def caption_retrieval(encoder: _Encoder, world: WorldSplit) -> Dict[str, Dict[str, float]]:
    image_ids = sorted(world.images)
    pairs = world.captions()
    image_emb = encoder.images([open_rgb(world.path(i)) for i in image_ids])
    text_emb = encoder.texts([text for _, text in pairs])
    row = {i: r for r, i in enumerate(image_ids)}
    relevant = np.zeros((len(image_ids), len(pairs)), dtype=bool)
    for col, (image_id, _) in enumerate(pairs):
        relevant[row[image_id], col] = True
    scores = image_emb @ text_emb.T
    out: Dict[str, Any] = {"n_images": len(image_ids), "n_captions": len(pairs)}
    for name, (s, r) in {"image_to_text": (scores, relevant), "text_to_image": (scores.T, relevant.T)}.items():
        out[name] = {**recall_at_k(s, r), "R@1_ci95": _interval(ranks(s, r) < 1)}
    return out


def plot_results(results: Dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on the training machines
    import matplotlib.pyplot as plt

    ret, zs = results["retrieval"], results["zero_shot"]
    bars = {"entity top-1": zs["top1"], "img->txt R@1": ret["image_to_text"]["R@1"],
            "img->txt R@5": ret["image_to_text"]["R@5"], "txt->img R@1": ret["text_to_image"]["R@1"],
            "txt->img R@5": ret["text_to_image"]["R@5"]}
    fig, ax = plt.subplots(figsize=(5.5, 3))
    ax.bar(range(len(bars)), [100 * v for v in bars.values()], color="#4c72b0")
    ax.axhline(100 * zs["chance"], color="grey", lw=1, ls="--", label="entity chance")
    ax.set_xticks(range(len(bars)), list(bars), fontsize=8, rotation=15)
    ax.set_ylim(0, 100), ax.set_ylabel("%"), ax.legend(fontsize=8)
    ax.set_title(f"world CLIP on {results['split']}", fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- the database's CLIP
def database_clip_config(model_cfg: Dict[str, Any], captions: str, image_root: str, out_dir: Path, steps: int,
                         batch_size: int, lr: float, holdout: float, seed: int, progress: bool):
    """The clip_pretrain config that create_index's `tiny_clip` section trains: the collection's
    image-caption pairs outside the held-out slice, `steps` steps, no evaluation (create_index reports
    recall on the held-out items itself)."""
    from mmrag.common.registry import RUNNERS

    model = OmegaConf.merge(MODELS.get("contrastive_clip").default_config({}),
                            {"open_clip": model_cfg, "loss": "infonce"})
    data = OmegaConf.merge(ImageTextBuilder.default_config({}),
                           {"builder": "image_text", "captions_file": captions, "image_root": image_root,
                            "val_fraction": holdout})
    run = OmegaConf.merge(RUNNERS.get("runner_base").default_config(),
                          {"task": "clip_pretrain", "output_dir": str(out_dir), "seed": seed, "batch_size": batch_size,
                           "max_steps": steps, "init_lr": lr, "min_lr": lr / 10, "warmup_steps": max(1, steps // 10),
                           "weight_decay": 0.1, "log_every": max(1, steps // 10), "save_every": steps,
                           "keep_checkpoints": 1, "evaluate": False, "progress": progress, "device": "cpu"})
    return OmegaConf.create({"model": model, "datasets": {"pairs": data}, "run": run,
                             "evaluation": ClipPretrainTask.DEFAULTS["evaluation"]})


def train_database_clip(model_cfg: Dict[str, Any], captions: str, image_root: str, out_dir: Path, steps: int,
                        batch_size: int = 64, lr: float = 1e-3, holdout: float = 0.1, seed: int = 0,
                        progress: bool = True) -> Tuple[Path, Dict[str, Any]]:
    """Train the database's CLIP through the runner; returns (the open_clip folder, the runner's result)."""
    from mmrag.common.registry import RUNNERS

    cfg = database_clip_config(model_cfg, captions, image_root, Path(out_dir), steps, batch_size, lr, holdout,
                               seed, progress)
    result = RUNNERS.get("runner_base")(cfg, ClipPretrainTask(cfg)).train()
    folder = Path(out_dir) / "final"
    if not (folder / WEIGHTS_FILE).is_file():
        raise RuntimeError(f"training finished without {folder / WEIGHTS_FILE}")  # a bug, not a user error
    return folder, result


def database_clip_trainer(cfg: Dict[str, Any], train_items: List[Dict[str, Any]], folder: Path,
                          progress: bool) -> Dict[str, Any]:
    """create_index's `tiny_clip` training (dense_database.ClipTrainer): `embedder.model_cfg` from scratch
    on the given items (written to <folder>/train_pairs.json) through the runner; returns the embedder
    keys of the trained model."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pairs = folder / "train_pairs.json"
    write_json(pairs, [{"image": it["image"], "caption": it["caption"]} for it in train_items])
    tc = cfg["tiny_clip"]
    trained, _ = train_database_clip(cfg["embedder"]["model_cfg"], str(pairs), str(cfg["image_root"]), folder,
                                     tc["steps"], tc["batch_size"], tc["lr"], holdout=0.0,
                                     seed=int(cfg["embedder"]["seed"]), progress=progress)
    return embedder_keys(trained)


def embedder_keys(folder: Path) -> Dict[str, Any]:
    """The ClipEmbedder keys that load a saved model, as for a real CLIP: an architecture name + weights."""
    folder = Path(folder).resolve()
    return {"type": "open_clip", "model_name": f"local-dir:{folder}", "model_cfg": None,
            "pretrained": str(folder / WEIGHTS_FILE)}

