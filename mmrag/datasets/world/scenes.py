"""Scene layout: which objects go in an image (skewed frequencies, usual companions) and where (boxes)."""
from __future__ import annotations

import random
from types import MappingProxyType
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from mmrag.datasets.world.entities import Entity, ObjectVocabulary
from mmrag.datasets.world.presets import WorldPreset

Box = Tuple[int, int, int, int]  # x, y, width, height in pixels of the final image

# Chance of 1, 2, 3, 4, 5 objects in a scene (clipped to the preset's range).
_COUNT_WEIGHTS = (0.15, 0.3, 0.3, 0.15, 0.1)
# Width / height of each object kind's box: vehicles are wide, trees and plants tall.
_ASPECT = MappingProxyType({"vehicle": 1.3, "plant": 0.8, "tree": 0.8, "cloud": 1.4, "tool": 0.75})


@dataclass
class SceneObject:
    label: str  # the COCO category name: an entity name or a generic object word
    word: str  # what a caption calls it: the entity's category ('creature') or the generic word ('tree')
    box: Box
    entity: Optional[Entity] = None

    @property
    def centre_x(self) -> float:
        return self.box[0] + self.box[2] / 2.0


@dataclass
class Scene:
    index: int
    split: str
    objects: List[SceneObject]
    sky: Tuple[int, int, int]
    ground: Tuple[int, int, int]
    horizon: float  # fraction of the height where the ground starts
    captions: Tuple[str, ...] = ()
    questions: List[dict] = field(default_factory=list)

    @property
    def image_id(self) -> str:
        return f"world_{self.index:012d}"


def anchor_entities(entities: Sequence[Entity], n_train: int, n_test: int,
                    np_rng: np.random.Generator) -> List[Entity]:
    """One entity per image that is surely drawn: every entity once in train, the rest by popularity."""
    weights = np.array([e.popularity for e in entities])
    weights = weights / weights.sum()
    extra = np_rng.choice(len(entities), max(0, n_train - len(entities)), p=weights)
    train = list(entities[:n_train]) + [entities[i] for i in extra]
    order = np_rng.permutation(len(train))
    train = [train[i] for i in order]
    test = [entities[i] for i in np_rng.choice(len(entities), n_test, p=weights)]
    return train + test


def choose_labels(anchor: Entity, vocab: ObjectVocabulary, preset: WorldPreset,
                  rng: random.Random, np_rng: np.random.Generator) -> List[str]:
    """Distinct object kinds for one scene: the anchor, maybe its companion, the rest by popularity."""
    low, high = preset.objects_per_image
    counts = list(range(low, high + 1))
    count = rng.choices(counts, weights=[_COUNT_WEIGHTS[min(c, 5) - 1] for c in counts])[0]
    labels = [anchor.name]
    if count > 1 and rng.random() < preset.partner_probability:
        labels.append(anchor.partner)
    while len(labels) < count:
        name = vocab.names[int(np_rng.choice(len(vocab.names), p=vocab.weights))]
        if name not in labels:
            labels.append(name)
    return labels


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def place_boxes(words: Sequence[str], size: int, rng: random.Random, max_overlap: float = 0.05) -> List[Optional[Box]]:
    """A box per object, overlapping others by IoU <= max_overlap; None where no free place was found."""
    side_range = {1: (0.4, 0.6), 2: (0.34, 0.48), 3: (0.28, 0.4)}.get(len(words), (0.24, 0.34))
    boxes: List[Optional[Box]] = []
    placed: List[Box] = []
    for word in words:
        box = None
        for _ in range(60):
            side = rng.uniform(*side_range) * size
            aspect = _ASPECT.get(word, 1.0)
            w = int(round(min(size * 0.9, side * aspect ** 0.5)))
            h = int(round(min(size * 0.9, side / aspect ** 0.5)))
            cand = (rng.randint(1, size - w - 1), rng.randint(1, size - h - 1), w, h)
            if all(_iou(cand, other) <= max_overlap for other in placed):
                box = cand
                break
        if box is not None:
            placed.append(box)
        boxes.append(box)
    return boxes


def _pastel(rng: random.Random, low: int, high: int) -> Tuple[int, int, int]:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def make_scene(index: int, split: str, anchor: Entity, vocab: ObjectVocabulary, preset: WorldPreset,
               rng: random.Random, np_rng: np.random.Generator) -> Scene:
    """Pick the objects of image `index`, place them, and choose a background."""
    labels = choose_labels(anchor, vocab, preset, rng, np_rng)
    words = [vocab.entity_by_name[l].category if l in vocab.entity_by_name else l for l in labels]
    boxes = place_boxes(words, preset.image_size, rng)
    objects = [SceneObject(label, word, box, vocab.entity_by_name.get(label))
               for label, word, box in zip(labels, words, boxes) if box is not None]
    return Scene(index=index, split=split, objects=objects, sky=_pastel(rng, 205, 250),
                 ground=_pastel(rng, 175, 225), horizon=rng.uniform(0.55, 0.8))
