"""Can every object's look be told apart at a given resolution? An oracle on ground-truth crops.

Before blaming a model for not recognising the world's entities, check that their drawings differ
at the resolution the model sees. Each annotated object of the world (COCO boxes in
annotations/instances_{split}.json) is cropped from its image, resized to `size` x `size` pixels
and flattened (RGB in [0, 1]). Two simple classifiers learn the object's name from the train crops
and are scored on the test crops:
  - nearest_centroid: the class whose mean train crop is closest (Euclidean);
  - ridge: least squares from pixels (plus a bias) to one-hot names, ridge strength chosen on a
    seeded share of the TRAIN crops held out (never on test), then refit on all train crops.
Reported per resolution and classifier: top-1 accuracy on all test crops and on entity crops, the
mean per-entity accuracy, how many entities stay below 50% / 80%, and the worst entities (with their
train-crop count and what they are taken for). A high score means the looks are distinguishable;
a low one for an entity with many train crops means its drawing is not.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from mmrag.common.errors import ConfigError, MissingPathError
from mmrag.common.tool_config import register_tool
from mmrag.datasets.formats import read_coco_instances

CLASSIFIERS = ("nearest_centroid", "ridge")
CROP_ORACLE = register_tool("crop_oracle", {
    "world": "dataset/world_small",   # world folder (images/, annotations/)
    "sizes": [32, 16],                # crop side in pixels, one evaluation per size
    "classifiers": list(CLASSIFIERS),
    "ridge_strengths": [0.001, 0.01, 0.1, 1.0, 10.0, 100.0],   # chosen among these on held-out train crops
    "val_fraction": 0.1,              # share of the train crops held out to choose the ridge strength
    "seed": 0,
    "worst": 10,                      # worst entities listed per result
    "out": None,                      # JSON report path (default <world>/crop_oracle.json)
    "progress": True,
})


def load_crops(world: Path, split: str, sizes: Sequence[int], progress: bool = True
               ) -> Tuple[Dict[int, np.ndarray], List[str], List[bool]]:
    """({size: float32 [n, size*size*3] crops}, names, is_entity) of every annotated object of a split."""
    path = world / "annotations" / f"instances_{split}.json"
    if not path.is_file():
        raise MissingPathError(f"{path}: COCO instances file of split '{split}' does not exist")
    inst = read_coco_instances(path)
    cats = {c["id"]: c for c in inst["categories"]}
    by_image = defaultdict(list)
    for ann in inst["annotations"]:
        by_image[ann["image_id"]].append(ann)
    crops: Dict[int, List[np.ndarray]] = {s: [] for s in sizes}
    names, is_entity = [], []
    for image in tqdm(inst["images"], desc=f"cropping {split}", unit="img", disable=not progress):
        if not by_image[image["id"]]:
            continue
        with Image.open(world / "images" / image["file_name"]) as im:
            picture = im.convert("RGB")
        for ann in by_image[image["id"]]:
            x, y, w, h = ann["bbox"]
            crop = picture.crop((round(x), round(y), round(x + w), round(y + h)))
            for s in sizes:
                crops[s].append(np.asarray(crop.resize((s, s), Image.BILINEAR), dtype=np.float32).reshape(-1) / 255.0)
            cat = cats[ann["category_id"]]
            names.append(cat["name"])
            is_entity.append(cat["supercategory"] != "object")  # generic objects have supercategory 'object'
    return {s: np.stack(v) if v else np.zeros((0, s * s * 3), np.float32) for s, v in crops.items()}, names, is_entity


def nearest_centroid(train_x: np.ndarray, train_y: np.ndarray, n_classes: int, test_x: np.ndarray) -> np.ndarray:
    """Predicted class of each test row: the class whose mean train row is nearest."""
    sums = np.zeros((n_classes, train_x.shape[1]))
    np.add.at(sums, train_y, train_x)
    counts = np.bincount(train_y, minlength=n_classes)
    centroids = sums / np.maximum(counts, 1)[:, None]
    dist = (centroids ** 2).sum(1)[None, :] - 2.0 * test_x @ centroids.T
    dist[:, counts == 0] = np.inf  # a class without train crops can never be predicted
    return dist.argmin(1)


def _ridge_fit(x: np.ndarray, y: np.ndarray, n_classes: int, strength: float) -> np.ndarray:
    xb = np.hstack([x, np.ones((len(x), 1))]).astype(np.float64)
    gram = xb.T @ xb + strength * np.eye(xb.shape[1])
    gram[-1, -1] -= strength  # the bias is not shrunk
    return np.linalg.solve(gram, xb.T @ np.eye(n_classes)[y])


def _ridge_predict(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (np.hstack([x, np.ones((len(x), 1))]) @ weights).argmax(1)


def ridge(train_x: np.ndarray, train_y: np.ndarray, n_classes: int, test_x: np.ndarray,
          strengths: Sequence[float], val_fraction: float, seed: int) -> Tuple[np.ndarray, float]:
    """(test predictions, chosen strength): strength by accuracy on held-out train rows, then refit."""
    order = np.random.default_rng(seed).permutation(len(train_x))
    n_val = max(1, int(round(val_fraction * len(train_x))))
    val, fit = order[:n_val], order[n_val:]
    scores = [(_ridge_predict(_ridge_fit(train_x[fit], train_y[fit], n_classes, s), train_x[val]) == train_y[val]).mean()
              for s in strengths]
    best = float(strengths[int(np.argmax(scores))])  # first of the best on a tie: the weakest shrinkage
    return _ridge_predict(_ridge_fit(train_x, train_y, n_classes, best), test_x), best


def summarise(pred: Sequence[str], gold: Sequence[str], is_entity: Sequence[bool], train_counts: Counter,
              worst: int) -> Dict[str, Any]:
    """Accuracy overall and per entity, entities below 50% / 80%, and the `worst` entities."""
    per: Dict[str, List[bool]] = defaultdict(list)
    taken_for: Dict[str, Counter] = defaultdict(Counter)
    for p, g, ent in zip(pred, gold, is_entity):
        if ent:
            per[g].append(p == g)
            if p != g:
                taken_for[g][p] += 1
    acc = {name: float(np.mean(v)) for name, v in per.items()}
    ranked = sorted(acc, key=lambda n: (acc[n], -len(per[n]), n))[:worst]
    n_ent = sum(is_entity)
    return {
        "accuracy": float(np.mean([p == g for p, g in zip(pred, gold)])) if gold else 0.0,
        "entity_accuracy": float(np.mean([p == g for p, g, e in zip(pred, gold, is_entity) if e])) if n_ent else 0.0,
        "mean_per_entity_accuracy": float(np.mean(list(acc.values()))) if acc else 0.0,
        "entities_tested": len(acc),
        "entities_below_50": sum(a < 0.5 for a in acc.values()),
        "entities_below_80": sum(a < 0.8 for a in acc.values()),
        "worst": [{"name": n, "accuracy": round(acc[n], 3), "test_crops": len(per[n]), "train_crops": train_counts[n],
                   "taken_for": taken_for[n].most_common(1)[0][0] if taken_for[n] else None} for n in ranked],
    }


def run_crop_oracle(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Crop, classify and score at every configured size; writes and returns the report."""
    unknown = [c for c in cfg["classifiers"] if c not in CLASSIFIERS]
    if unknown or not cfg["sizes"] or min(cfg["sizes"]) < 1:
        raise ConfigError(f"crop_oracle: classifiers must be among {CLASSIFIERS} (got {unknown}) and sizes "
                          f"positive (got {cfg['sizes']})")
    world, sizes, progress = Path(str(cfg["world"])), [int(s) for s in cfg["sizes"]], bool(cfg["progress"])
    train_x, train_names, _ = load_crops(world, "train", sizes, progress)
    test_x, test_names, test_entity = load_crops(world, "test", sizes, progress)
    classes = sorted(set(train_names) | set(test_names))
    index = {n: i for i, n in enumerate(classes)}
    train_y = np.array([index[n] for n in train_names])
    report: Dict[str, Any] = {"world": str(world), "train_crops": len(train_names), "test_crops": len(test_names),
                              "classes": len(classes), "results": {}}
    for size in sizes:
        for name in cfg["classifiers"]:
            extra: Dict[str, Any] = {}
            if name == "nearest_centroid":
                pred = nearest_centroid(train_x[size], train_y, len(classes), test_x[size])
            else:
                pred, extra["ridge_strength"] = ridge(train_x[size], train_y, len(classes), test_x[size],
                                                      cfg["ridge_strengths"], float(cfg["val_fraction"]), int(cfg["seed"]))
            result = summarise([classes[i] for i in pred], test_names, test_entity, Counter(train_names), int(cfg["worst"]))
            report["results"][f"{size}px/{name}"] = {"size": size, "classifier": name, **extra, **result}
    out = Path(str(cfg["out"])) if cfg.get("out") else world / "crop_oracle.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(out)
    report["out"] = str(out)
    return report


def report_table(report: Dict[str, Any]) -> str:
    """Markdown: one row per size and classifier."""
    lines = ["| crop | classifier | top-1 all | top-1 entities | mean per entity | entities < 50% | entities < 80% |",
             "|---|---|---|---|---|---|---|"]
    for r in report["results"].values():
        lines.append(f"| {r['size']} px | {r['classifier']} | {100 * r['accuracy']:.1f} | {100 * r['entity_accuracy']:.1f} | "
                     f"{100 * r['mean_per_entity_accuracy']:.1f} | {r['entities_below_50']} / {r['entities_tested']} | "
                     f"{r['entities_below_80']} / {r['entities_tested']} |")
    return "\n".join(lines)
