"""Entity signatures are drawn differently enough to tell apart at the size objects have in `small` scenes."""
import random

import numpy as np

from mmrag.datasets.world.drawing import draw_scene
from mmrag.datasets.world.entities import make_entities
from mmrag.datasets.world.scenes import Scene, SceneObject, place_boxes
from mmrag.datasets.world.vocabulary import GENERIC_OBJECTS


def _alone(obj_entity, word, size=32):
    scene = Scene(index=0, split="train", objects=[SceneObject("x", word, (2, 2, size - 4, size - 4), obj_entity)],
                  sky=(230, 230, 230), ground=(230, 230, 230), horizon=0.5)
    return np.asarray(draw_scene(scene, size), dtype=np.float32)


def test_every_entity_of_small_looks_different_at_28_pixels():
    entities = make_entities(60, random.Random(0))  # the `small` preset's entity count
    images = np.stack([_alone(e, e.category).ravel() for e in entities])
    # mean absolute difference between every pair of entity images, in grey levels (0-255)
    dist = np.abs(images[:, None, :] - images[None, :, :]).mean(axis=2)
    np.fill_diagonal(dist, np.inf)
    assert dist.min() > 2.5
    assert np.median(dist[np.isfinite(dist)]) > 20.0


def test_generic_objects_and_scene_size():
    drawn = [_alone(None, word) for word in GENERIC_OBJECTS]
    for i in range(len(drawn)):
        for j in range(i + 1, len(drawn)):
            assert np.abs(drawn[i] - drawn[j]).mean() > 5.0
    assert drawn[0].shape == (32, 32, 3)


def test_boxes_stay_inside_the_image_and_barely_overlap():
    rng = random.Random(3)
    for _ in range(200):
        boxes = [b for b in place_boxes(["creature", "tree", "vehicle", "tool", "cup"], 96, rng) if b]
        assert boxes
        for x, y, w, h in boxes:
            assert x >= 0 and y >= 0 and x + w <= 96 and y + h <= 96 and w > 5 and h > 5
