"""Grounding questions of the world: presence questions balanced per object name.

Why: a model trained on presence questions whose answer depends on the NAME (a rare name is almost
always "no") learns the name's prior instead of looking. VQA v2 removed that shortcut with
complementary pairs; we do the same. For every positive (image I holds object n) there is a negative
(another image J of the same split without n, asking about the same n), so within a split every name
is asked "yes" exactly as often as "no". The negative image J is chosen like the POPE test splits
choose their negatives (`mmrag.datasets.pope_builder`), one strategy per positive from a seeded mix:
  - random:      J uniform among the split's images without n;
  - popular:     J among the images for which n is one of the `depth` most frequent absent names;
  - adversarial: J among the images for which n is one of the `depth` absent names that co-occur
                 most with J's objects (n "should" be there given the scene).
When a popular/adversarial pool is empty for n (a rare name is nobody's popular negative), J is
drawn at random and the record says so (`strategy`). A name present in every image of a split gets
no questions there (no negative exists).

Splits: `val` is a fixed seeded subset of the TRAIN images (for choosing thresholds and settings),
`train` the other train images, `test` the test images; negatives come from the same subset, so no
image is shared between splits.

The module also balances the world's LLaVA "Is there a ...?" turns (instruct files). They asked about
a uniformly drawn generic word (tree, rock, ...), absent from most scenes, so 94% were answered "no";
they now ask about generic words and category words (creature, plant, tool, vehicle: every scene
holds one), half "yes" per split, each word as often present as absent where the scenes allow.
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Callable, Dict, List, Sequence, Set, Tuple

from mmrag.datasets.pope_builder import STRATEGIES, co_occurrence, image_frequency, sample_negatives

YESNO_SPLITS = ("train", "val", "test")
ANSWERS = {"yes": "Yes.", "no": "No."}
VAL_FRACTION = 0.1   # share of the train images held out as `val`
POOL_DEPTH = 10      # an image is a popular/adversarial negative for a name among its first 10 candidates


def with_article(name: str) -> str:
    return ("an " if name[0] in "aeiou" else "a ") + name


def question_text(name: str) -> str:
    return f"Is there {with_article(name)} in the image?"


def split_val_images(train_images: Sequence[str], rng: random.Random,
                     fraction: float = VAL_FRACTION) -> Tuple[List[str], List[str]]:
    """(train, val) image ids: a seeded `fraction` of the train images (at least one) held out."""
    ordered = sorted(train_images)
    n_val = max(1, int(round(fraction * len(ordered)))) if len(ordered) > 1 else 0
    val = set(rng.sample(ordered, n_val))
    return [i for i in ordered if i not in val], sorted(val)


def negative_pools(objects: Dict[str, List[str]], depth: int = POOL_DEPTH) -> Dict[str, Dict[str, List[str]]]:
    """strategy -> name -> images (sorted) that the strategy would ask about that absent name."""
    frequency, pairs = image_frequency(objects), co_occurrence(objects)
    names = sorted(frequency)
    by_frequency = sorted(names, key=lambda name: (-frequency[name], name))
    pools: Dict[str, Dict[str, List[str]]] = {s: {} for s in STRATEGIES}
    for image in sorted(objects):
        present = set(objects[image])
        for name in names:
            if name not in present:
                pools["random"].setdefault(name, []).append(image)
        k = min(depth, len(names) - len(present))
        for strategy in ("popular", "adversarial"):  # deterministic strategies: no random draw is used
            for name in sample_negatives(strategy, objects[image], by_frequency, frequency, pairs, k, random.Random(0)):
                pools[strategy].setdefault(name, []).append(image)
    return pools


def balanced_pairs(objects: Dict[str, List[str]], rng: random.Random,
                   depth: int = POOL_DEPTH) -> List[Dict[str, str]]:
    """Rows {image, name, label, strategy}: each positive followed by its complementary negative."""
    pools = negative_pools(objects, depth)
    rows: List[Dict[str, str]] = []
    for image in sorted(objects):
        for name in sorted(objects[image]):
            if name not in pools["random"]:
                continue  # in every image of the split: no negative exists
            strategy = rng.choice(STRATEGIES)
            used = strategy if pools[strategy].get(name) else "random"
            negative = rng.choice(pools[used][name])
            rows.append({"image": image, "name": name, "label": "yes", "strategy": strategy})
            rows.append({"image": negative, "name": name, "label": "no", "strategy": used})
    return rows


def llava_yesno_records(rows: Sequence[Dict[str, str]], image_path: Callable[[str], str]) -> List[Dict[str, object]]:
    """LLaVA conversation records; ids '<image id>_yesno_<n>' (n counts per image)."""
    per_image: Counter = Counter()
    records = []
    for row in rows:
        image = row["image"]
        records.append({
            "id": f"{image}_yesno_{per_image[image]}", "image": image_path(image), "strategy": row["strategy"],
            "conversations": [{"from": "human", "value": "<image>\n" + question_text(row["name"])},
                              {"from": "gpt", "value": ANSWERS[row["label"]]}]})
        per_image[image] += 1
    return records


# ----------------------------------------------------------------------------- naming the objects
# Why: the captions describe objects by looks ("a pink checkered tool"), so before these files no
# training text put an entity's NAME next to its picture except the one-bit answers of presence
# questions. A listing turn names every object of the image (left to right, as a reader scans), the
# dense name-to-look signal that real captions give for free ("a dog on a sofa"). The listed
# presence records ask the same balanced questions after that listing turn, so a model can answer by
# checking its own list (evaluated with `evaluation.describe_first`, the list then being the model's).
LIST_INSTRUCTION = "List the objects in the image."


def object_list_text(names_left_to_right: Sequence[str]) -> str:
    """'a troukrux, an ovel and a tree.' (one name: 'a tree.')."""
    named = [with_article(n) for n in names_left_to_right]
    text = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    return text + "."


def listing_turns(names_left_to_right: Sequence[str]) -> List[Dict[str, str]]:
    return [{"from": "human", "value": "<image>\n" + LIST_INSTRUCTION},
            {"from": "gpt", "value": object_list_text(names_left_to_right)}]


def llava_listing_records(images: Sequence[str], names_left_to_right: Dict[str, Sequence[str]],
                          image_path: Callable[[str], str]) -> List[Dict[str, object]]:
    """One listing conversation per image; ids '<image id>_objects'."""
    return [{"id": f"{image}_objects", "image": image_path(image),
             "conversations": listing_turns(names_left_to_right[image])} for image in images]


def llava_listed_yesno_records(yesno_records: Sequence[Dict[str, object]],
                               names_left_to_right: Dict[str, Sequence[str]],
                               image_of: Callable[[str], str]) -> List[Dict[str, object]]:
    """The presence records with the listing turn first (ids '<yesno id>_listed'); `image_of` maps a
    record's image path back to its image id."""
    out = []
    for record in yesno_records:
        question, answer = record["conversations"]
        out.append({**record, "id": f"{record['id']}_listed",
                    "conversations": listing_turns(names_left_to_right[image_of(str(record["image"]))]) + [
                        {"from": "human", "value": str(question["value"]).replace("<image>\n", "")}, answer]})
    return out


def pope_rows(yesno_records: Sequence[Dict[str, object]]) -> Dict[str, List[Dict[str, object]]]:
    """The presence records as POPE lines {question_id, image (relative to images/), text, label}: all
    of them (`all`, balanced per name) and per negative strategy (not balanced: a strategy's positives
    are the ones paired with its negatives, plus the rest drawn by the seeded mix)."""
    out: Dict[str, List[Dict[str, object]]] = {"all": [], **{s: [] for s in STRATEGIES}}
    for n, record in enumerate(yesno_records):
        question, answer = record["conversations"]
        row = {"question_id": n, "image": str(record["image"]).split("/", 1)[1],
               "text": str(question["value"]).replace("<image>\n", ""),
               "label": "yes" if answer["value"] == ANSWERS["yes"] else "no"}
        out["all"].append(row)
        out[str(record["strategy"])].append(row)
    return out


# ----------------------------------------------------------------------------- instruct presence turns
def presence_plan(scene_objects: Sequence[Set[str]], generic: Sequence[str], rng: random.Random) -> List[str]:
    """The generic word to ask "Is there ...?" about, per scene, so that half the scenes are answered
    "yes" (all scenes holding a generic word, when fewer than half do) and each word is asked about
    as often present as absent as far as the scenes allow.

    A seeded sample of the scenes holding generic words gets a "yes" question about the present word
    furthest behind on "yes"; every other scene is asked about the absent word furthest behind on "no".
    """
    generic_set = set(generic)
    holding = [i for i, objs in enumerate(scene_objects) if objs & generic_set]
    yes_scenes = set(rng.sample(holding, min(len(holding), len(scene_objects) // 2)))
    surplus: Counter = Counter()  # word -> yes answers minus no answers so far
    asked = []
    for i, objs in enumerate(scene_objects):
        if i in yes_scenes:
            word = min(sorted(objs & generic_set), key=lambda w: (surplus[w], rng.random()))
            surplus[word] += 1
        else:
            word = max([w for w in generic if w not in objs], key=lambda w: (surplus[w], rng.random()))
            surplus[word] -= 1
        asked.append(word)
    return asked


def presence_words(scenes, generic: Sequence[str], seed: int, split: str) -> List[str]:
    """`presence_plan` for the scenes of a split, from its own random stream."""
    rng = random.Random(f"{seed}:presence-{split}")
    return presence_plan([{o.word for o in s.objects} for s in scenes], generic, rng)
