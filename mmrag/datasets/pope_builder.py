"""POPE questions from any COCO-format instances file (Li et al., 2023, "Evaluating Object Hallucination").

Per image: positives are objects annotated in the image; negatives are objects absent from it, chosen
  - random:      uniformly among all absent categories;
  - popular:     the absent categories present in the most images of the dataset;
  - adversarial: the absent categories that co-occur most often (in images) with the image's objects,
                 scored by the sum of co-occurrence counts over the image's objects.
As many negatives as positives (50/50 yes/no). Like POPE, an image with fewer than `n_per_image`
distinct annotated objects is skipped. Ties are broken by dataset frequency, then by name, so the
deterministic strategies give one answer.
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Dict, List, Optional, Sequence

STRATEGIES = ("random", "popular", "adversarial")
QUESTION_TEMPLATE = "Is there a {object} in the image?"


def objects_by_image(instances: Dict) -> Dict[int, List[str]]:
    """image id -> sorted distinct category names annotated in it (images without objects included)."""
    names = {c["id"]: c["name"] for c in instances["categories"]}
    found: Dict[int, set] = {im["id"]: set() for im in instances["images"]}
    for ann in instances["annotations"]:
        found.setdefault(ann["image_id"], set()).add(names[ann["category_id"]])
    return {image_id: sorted(objs) for image_id, objs in found.items()}


def image_frequency(objects: Dict[int, List[str]]) -> Counter:
    """category name -> number of images it appears in."""
    return Counter(name for objs in objects.values() for name in objs)


def co_occurrence(objects: Dict[int, List[str]]) -> Dict[str, Counter]:
    """category name -> Counter of other category names -> number of images holding both."""
    pairs: Dict[str, Counter] = {}
    for objs in objects.values():
        for a in objs:
            counter = pairs.setdefault(a, Counter())
            counter.update(b for b in objs if b != a)
    return pairs


def sample_negatives(strategy: str, present: Sequence[str], by_frequency: Sequence[str], frequency: Counter,
                     pairs: Dict[str, Counter], n: int, rng: random.Random) -> List[str]:
    """`n` absent category names chosen by `strategy` (see the module docstring).

    `by_frequency` lists every category name sorted by (images holding it desc, name); it is the
    tie-break order of both deterministic strategies, so they only look at a few names per image.
    """
    present_set = set(present)
    if strategy == "random":
        return rng.sample(sorted(name for name in by_frequency if name not in present_set), n)
    chosen: List[str] = []
    if strategy == "adversarial":
        scores: Counter = Counter()
        for obj in present:
            scores.update(pairs.get(obj, Counter()))
        scored = [name for name, score in scores.items() if score > 0 and name not in present_set]
        chosen = sorted(scored, key=lambda name: (-scores[name], -frequency[name], name))[:n]
    elif strategy != "popular":
        raise ValueError(f"unknown POPE strategy '{strategy}'; known: {', '.join(STRATEGIES)}")
    for name in by_frequency:  # popular, or adversarial names that co-occur with nothing in the image
        if len(chosen) == n:
            break
        if name not in present_set and name not in chosen:
            chosen.append(name)
    return chosen


def build_pope(instances: Dict, strategy: str, n_per_image: int = 3, seed: int = 0,
               max_images: Optional[int] = None) -> List[Dict[str, object]]:
    """POPE questions [{question_id, image, text, label}] for the images of a parsed COCO instances dict.

    Images are taken in id order (a seeded sample of `max_images` when given); per image, yes and no
    questions alternate. question_id counts from 1.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown POPE strategy '{strategy}'; known: {', '.join(STRATEGIES)}")
    rng = random.Random(f"pope-{strategy}-{seed}")
    objects = objects_by_image(instances)
    frequency, pairs = image_frequency(objects), co_occurrence(objects)
    all_names = sorted({c["name"] for c in instances["categories"]})
    by_frequency = sorted(all_names, key=lambda name: (-frequency[name], name))
    file_names = {im["id"]: im["file_name"] for im in instances["images"]}
    eligible = [i for i in sorted(objects)
                if len(objects[i]) >= n_per_image and len(all_names) - len(objects[i]) >= n_per_image]
    if max_images is not None and max_images < len(eligible):
        eligible = sorted(rng.sample(eligible, max_images))
    questions: List[Dict[str, object]] = []
    for image_id in eligible:
        positives = rng.sample(objects[image_id], n_per_image)
        negatives = sample_negatives(strategy, objects[image_id], by_frequency, frequency, pairs, n_per_image, rng)
        for positive, negative in zip(positives, negatives):
            for name, label in ((positive, "yes"), (negative, "no")):
                questions.append({"question_id": len(questions) + 1, "image": file_names[image_id],
                                  "text": QUESTION_TEMPLATE.format(object=name), "label": label})
    return questions
