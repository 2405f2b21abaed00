"""LRV-style robust instructions from the world's scene graph: positive instructions and negative ones
whose premise is false, each with a machine-checkable claim.

Input (the world's saved files): entities.json (looks and facts of each entity) and
annotations/instances_{train,test}.json (the objects of each image and their boxes). The scene graph
of an image is its objects (label, category word, box, entity); the world's region descriptions say
the same in Visual Genome's layout and are what the LLM generator (`lrv_llm`) is shown instead.

Positive task families (answers under 30 words, every claim true):
    description, existence, counting, attribute (colour / pattern / shape / parts), relation (left /
    right of another object), knowledge (a fact of the entity, from entities.json).
Negative instructions (LRV's manipulations; each in an interrogative and a declarative form; the
answer says the premise is false and why):
    nonexistent_object     an object kind that is not in the image
    nonexistent_attribute  an object kind that is there, with a colour none of its objects has
    nonexistent_relation   two objects that are there, in the opposite left/right relation
    existent_attribute     an object that is there, with a wrong colour / pattern / shape / part count
    knowledge              a wrong fact about an entity that is there, taken from another entity's facts

Every item holds `claims` (positives: all true) or `premise` (negatives: false), as small dicts over
annotation ids, so a test can check them against the annotation files without this module.

Output under <world>/lrv/ (splits: train, val = the world's balanced yes/no val images, test):
    instructions_{split}.json        LRV's released format [{image_id, question, answer, task}]
    llava_{positive,negative}_{split}.json   LLaVA conversations (one turn), for the weighted mixture
    items_{split}.jsonl              the evaluation view (vqa_eval's vqa_jsonl reader): question_id,
                                     image, question, answer, polarity, task, form, keywords, claims/premise
    mme/{existence,count,position,color}/<image>.{jpg,txt}   the world's paired yes/no set in MME's
                                     released layout (test images), and mme_test.jsonl, its vqa_jsonl view
                                     (lrv_formats.read_mme; images relative to lrv/mme)
"""
from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from mmrag.common.errors import DataFormatError
from mmrag.datasets import formats
from mmrag.datasets.lrv_formats import read_mme
from mmrag.datasets.world import grounding
from mmrag.datasets.world.entities import Entity, Signature
from mmrag.datasets.world.language import PART_WORDS, Reference, left_to_right, object_phrase, references, with_article
from mmrag.datasets.world.scenes import Scene, SceneObject
from mmrag.datasets.world.vocabulary import (
    CATEGORIES, CATEGORY_PARTS, COLOURS, GENERIC_OBJECTS, NUMBER_WORDS, PATTERNS, QUESTION_TEMPLATES, SHAPES,
)

SPLITS = ("train", "val", "test")
MAX_ANSWER_WORDS = 29          # LRV: answers under 30 words
MIN_GAP_FRACTION = 0.1         # left/right claims only between objects whose centres are >= 10% of the width apart
MME_SUBTASKS = ("existence", "count", "position", "color")
MME_SUFFIX = " Please answer yes or no."
ATTRIBUTES = ("colour", "pattern", "shape", "parts")
# attribute -> reference kinds that would give the answer away (or contradict a manipulation)
_HIDING_REFS = {"colour": ("colour",), "pattern": ("pattern",), "shape": (), "parts": ()}
# fact attribute -> how a sentence states it about one entity (third person)
FACT_CLAIMS = {"diet": "eats {v}", "habitat": "lives in {v}", "predator": "is hunted by {v}",
               "origin": "comes from {v}", "soil": "grows in {v}", "pollinator": "is pollinated by {v}",
               "used_for": "is used for {v}", "material": "is made of {v}", "user": "is used by {v}",
               "fuel": "runs on {v}", "terrain": "travels best over {v}"}

Item = Dict[str, object]


# ----------------------------------------------------------------------------- the scene graph
@dataclass
class GraphScene:
    """One image: the world's Scene (objects left to right as annotated) and each object's annotation id."""

    scene: Scene
    ann_ids: List[int]
    size: int
    split: str  # train | val | test

    @property
    def image_id(self) -> str:
        return self.scene.image_id

    def ann_of(self, obj: SceneObject) -> int:
        return next(a for o, a in zip(self.scene.objects, self.ann_ids) if o is obj)

    def words(self) -> List[str]:
        return sorted({o.word for o in self.scene.objects})


def entity_from_record(record: Dict[str, object]) -> Entity:
    sig = dict(record["signature"])
    return Entity(id=record["id"], name=record["name"], category=record["category"], signature=Signature(**sig),
                  facts=dict(record["facts"]), coco_category_id=int(record.get("coco_category_id", 0)),
                  partner=str(record.get("usual_companion", "")))


def _check_box(box: Sequence[float], size: Tuple[int, int], path: Path, ann_id: int) -> None:
    x, y, w, h = box
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > size[0] or y + h > size[1]:
        raise DataFormatError(f"{path}: annotation {ann_id}: box {list(box)} (x, y, width, height) is not inside "
                              f"the {size[0]}x{size[1]} image")


def load_scene_graphs(world_dir: Path, seed: int) -> Tuple[List[GraphScene], List[Entity]]:
    """Every image of the world as a GraphScene, in image-id order; val = the balanced yes/no val images."""
    entities = [entity_from_record(r) for r in formats.read_entities(world_dir / "entities.json")]
    by_name = {e.name: e for e in entities}
    graphs: List[GraphScene] = []
    for split in ("train", "test"):
        path = world_dir / "annotations" / f"instances_{split}.json"
        data = formats.read_coco_instances(path)
        names = {c["id"]: c["name"] for c in data["categories"]}
        anns: Dict[int, List[Dict]] = {}
        for ann in sorted(data["annotations"], key=lambda a: a["id"]):
            anns.setdefault(ann["image_id"], []).append(ann)
        for image in sorted(data["images"], key=lambda i: i["id"]):
            size = (int(image["width"]), int(image["height"]))
            objects, ids = [], []
            for ann in anns.get(image["id"], []):
                _check_box(ann["bbox"], size, path, ann["id"])
                label = names[ann["category_id"]]
                entity = by_name.get(label)
                objects.append(SceneObject(label, entity.category if entity else label,
                                           tuple(int(round(v)) for v in ann["bbox"]), entity))
                ids.append(int(ann["id"]))
            if objects:
                scene = Scene(index=int(image["id"]), split=split, objects=objects, sky=(0, 0, 0), ground=(0, 0, 0),
                              horizon=0.0)
                graphs.append(GraphScene(scene, ids, size[0], split))
    train_ids = [g.image_id for g in graphs if g.split == "train"]
    # the world's own val images (generator.yesno_balanced draws them first from this stream)
    _, val = grounding.split_val_images(train_ids, random.Random(f"{seed}:yesno-balanced"))
    val_set = set(val)
    for g in graphs:
        if g.image_id in val_set:
            g.split = "val"
    return graphs, entities


# ----------------------------------------------------------------------------- wording helpers
def plural(word: str, n: int) -> str:
    return word if n == 1 else word + "s"


def number_word(n: int) -> str:
    return NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)


def inventory(objects: Sequence[SceneObject]) -> str:
    """'two creatures, a tree and a tool' (kinds in left-to-right order of first appearance)."""
    counts: Dict[str, int] = {}
    for obj in sorted(objects, key=lambda o: o.centre_x):
        counts[obj.word] = counts.get(obj.word, 0) + 1
    parts = [with_article(w) if n == 1 else f"{number_word(n)} {plural(w, n)}" for w, n in counts.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def location(obj: SceneObject, size: int) -> str:
    """Where the box centre falls in a 3x3 grid: 'top left', 'centre', 'bottom right'."""
    cx, cy = obj.box[0] + obj.box[2] / 2, obj.box[1] + obj.box[3] / 2
    col = ("left", "", "right")[min(2, int(3 * cx / size))]
    row = ("top", "", "bottom")[min(2, int(3 * cy / size))]
    return " ".join(p for p in (row, col) if p) or "centre"


def attribute_value(obj: SceneObject, attribute: str) -> str:
    sig = obj.entity.signature
    return {"colour": sig.colour, "pattern": sig.pattern, "shape": sig.shape, "parts": str(sig.parts)}[attribute]


def parts_phrase(obj: SceneObject, n: int) -> str:
    one, many = PART_WORDS[obj.entity.category]
    return f"{number_word(n)} {one if n == 1 else many}"


def fact_claim(attribute: str, value: str) -> str:
    return FACT_CLAIMS[attribute].format(v=value)


def pick_reference(graph: GraphScene, obj: SceneObject, rng: random.Random, avoid: Sequence[str] = ()) -> Optional[Reference]:
    refs = [r for r in references(graph.scene, obj, graph.size) if r.kind not in avoid]
    return rng.choice(refs) if refs else None


def separated_pairs(graph: GraphScene) -> List[Tuple[SceneObject, SceneObject]]:
    """(left, right) pairs whose box centres are at least MIN_GAP_FRACTION of the width apart."""
    ordered = left_to_right(graph.scene)
    gap = MIN_GAP_FRACTION * graph.size
    return [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1:] if b.centre_x - a.centre_x >= gap]


def _item(task: str, question: str, answer: str, form: str, keywords: Sequence[str], **claim) -> Item:
    return {"task": task, "question": question, "answer": answer, "form": form, "keywords": list(keywords), **claim}


# ----------------------------------------------------------------------------- positive instructions
def positive_description(graph: GraphScene, rng: random.Random) -> List[Item]:
    question = rng.choice(("Describe the image in detail.", "What can you see in this picture?",
                           "Give a short description of the scene."))
    phrases = [with_article(object_phrase(o)) for o in left_to_right(graph.scene)]
    listing = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    claims = [{"kind": "exists", "word": w} for w in graph.words()]
    return [_item("description", question, f"The image shows {listing}.", "declarative", graph.words(), claims=claims)]


def positive_existence(graph: GraphScene, rng: random.Random) -> List[Item]:
    items = []
    for word in rng.sample(graph.words(), min(2, len(graph.words()))):
        objs = [o for o in graph.scene.objects if o.word == word]
        if len(objs) == 1:
            where = location(objs[0], graph.size)
            where = "the centre" if where == "centre" else f"the {where} part"
            answer = f"Yes, there is {with_article(object_phrase(objs[0]))} in {where} of the image."
        else:
            answer = f"Yes, there are {number_word(len(objs))} {plural(word, len(objs))} in the image."
        question = rng.choice(("Is there {} in the image?", "Can you see {} in this picture?")).format(with_article(word))
        items.append(_item("existence", question, answer, "interrogative", ["yes"],
                           claims=[{"kind": "exists", "word": word}]))
    return items


def positive_counting(graph: GraphScene, rng: random.Random) -> List[Item]:
    n = len(graph.scene.objects)
    answer = "There is one object in the image." if n == 1 else f"There are {number_word(n)} objects in the image."
    items = [_item("counting", "How many objects are there in the image?", answer, "interrogative", [number_word(n)],
                   claims=[{"kind": "count", "word": None, "value": n}])]
    word = rng.choice(graph.words())
    k = sum(o.word == word for o in graph.scene.objects)
    items.append(_item("counting", f"How many {plural(word, 2)} can you see?",
                       f"I can see {number_word(k)} {plural(word, k)}.", "interrogative", [number_word(k)],
                       claims=[{"kind": "count", "word": word, "value": k}]))
    return items


def _attribute_qa(obj: SceneObject, attribute: str, ref: str) -> Tuple[str, str, str]:
    value = attribute_value(obj, attribute)
    if attribute == "colour":
        return f"What colour is the {ref}?", f"The {ref} is {value}.", value
    if attribute == "pattern":
        answer = f"The {ref} has a plain body." if value == "plain" else f"The body of the {ref} is {value}."
        return f"What pattern covers the body of the {ref}?", answer, value
    if attribute == "shape":
        return f"What shape is the body of the {ref}?", f"The body of the {ref} is {value}.", value
    many = PART_WORDS[obj.entity.category][1]
    words = parts_phrase(obj, int(value))
    return f"How many {many} does the {ref} have?", f"The {ref} has {words}.", words.split()[0]


def positive_attribute(graph: GraphScene, rng: random.Random) -> List[Item]:
    items = []
    entities = [o for o in graph.scene.objects if o.entity is not None]
    for obj in rng.sample(entities, min(3, len(entities))):
        attribute = rng.choice(ATTRIBUTES)
        ref = pick_reference(graph, obj, rng, _HIDING_REFS[attribute])
        if ref is None:
            continue
        question, answer, keyword = _attribute_qa(obj, attribute, ref.phrase)
        items.append(_item("attribute", question, answer, "interrogative", [keyword], claims=[
            {"kind": "attribute", "object": graph.ann_of(obj), "attribute": attribute,
             "value": attribute_value(obj, attribute)}]))
    return items


def positive_relation(graph: GraphScene, rng: random.Random) -> List[Item]:
    items = []
    pairs = separated_pairs(graph)
    for left, right in rng.sample(pairs, min(2, len(pairs))):
        a, b = (left, right) if rng.random() < 0.5 else (right, left)
        ra, rb = pick_reference(graph, a, rng), pick_reference(graph, b, rng)
        if ra is None or rb is None:
            continue
        side = "left" if a is left else "right"
        question = rng.choice(("Is the {a} to the left or to the right of the {b}?",
                               "On which side of the {b} is the {a}?")).format(a=ra.phrase, b=rb.phrase)
        items.append(_item("relation", question, f"The {ra.phrase} is to the {side} of the {rb.phrase}.",
                           "interrogative", [side], claims=[
                               {"kind": "left_of", "a": graph.ann_of(left), "b": graph.ann_of(right)}]))
    return items


def positive_knowledge(graph: GraphScene, rng: random.Random) -> List[Item]:
    items = []
    entities = [o for o in graph.scene.objects if o.entity is not None]
    for obj in rng.sample(entities, min(3, len(entities))):
        ref = pick_reference(graph, obj, rng)
        if ref is None:
            continue
        attribute = rng.choice(sorted(obj.entity.facts))
        value = obj.entity.facts[attribute]
        question = rng.choice(QUESTION_TEMPLATES[(obj.entity.category, attribute)]).format(ref=ref.phrase)
        answer = f"The {ref.phrase} is {with_article(obj.entity.name)}; it {fact_claim(attribute, value)}."
        items.append(_item("knowledge", question, answer, "interrogative", [value], claims=[
            {"kind": "fact", "object": graph.ann_of(obj), "attribute": attribute, "value": value}]))
    return items


POSITIVE_FAMILIES: Tuple[Callable[[GraphScene, random.Random], List[Item]], ...] = (
    positive_description, positive_existence, positive_counting, positive_attribute, positive_relation,
    positive_knowledge)


# ----------------------------------------------------------------------------- negative instructions
def _negative(task: str, forms: Tuple[Sequence[str], Sequence[str]], fill: Dict[str, str], answer: str,
              keywords: Sequence[str], premise: Dict[str, object], rng: random.Random) -> List[Item]:
    """The same false premise asked once as a question and once as a request."""
    return [_item(f"negative_{task}", rng.choice(templates).format(**fill), answer, form, keywords, premise=premise)
            for form, templates in zip(("interrogative", "declarative"), forms)]


def negative_nonexistent_object(graph: GraphScene, rng: random.Random) -> List[Item]:
    absent = [w for w in GENERIC_OBJECTS + CATEGORIES if w not in graph.words()]
    anchor = rng.choice(graph.scene.objects)
    ref = pick_reference(graph, anchor, rng)
    word = rng.choice(absent)
    near = f" next to the {ref.phrase}" if ref is not None else " in the image"
    forms = (("Is there {a}{n}?", "What colour is the {w}{n}?", "Can you see {a}{n}?"),
             ("Describe the {w}{n}.", "Tell me where the {w} is in this picture."))
    answer = f"There is no {word} in the image; it shows {inventory(graph.scene.objects)}."
    return _negative("nonexistent_object", forms, {"a": with_article(word), "w": word, "n": near}, answer, [],
                     {"kind": "exists", "word": word}, rng)


def negative_nonexistent_attribute(graph: GraphScene, rng: random.Random) -> List[Item]:
    words = sorted({o.word for o in graph.scene.objects if o.entity is not None})
    if not words:
        return []
    word = rng.choice(words)
    objs = [o for o in graph.scene.objects if o.word == word]
    used = {c for o in objs for c in (o.entity.signature.colour, o.entity.signature.accent)}
    colour = rng.choice([c for c in sorted(COLOURS) if c not in used])
    true = sorted({o.entity.signature.colour for o in objs})
    what = f"the {word} here is {true[0]}" if len(objs) == 1 else \
        f"the {plural(word, 2)} here are {' and '.join(true)}"
    forms = (("Is there {a} in the image?", "What is the {p} doing in this picture?"),
             ("Describe the {p} in the image.", "Point out the {p} in this picture."))
    phrase = f"{colour} {word}"
    return _negative("nonexistent_attribute", forms, {"a": with_article(phrase), "p": phrase},
                     f"There is no {phrase} in the image; {what}.", true,
                     {"kind": "exists_with", "word": word, "attribute": "colour", "value": colour}, rng)


def negative_nonexistent_relation(graph: GraphScene, rng: random.Random) -> List[Item]:
    pairs = separated_pairs(graph)
    if not pairs:
        return []
    left, right = rng.choice(pairs)
    a, b = (left, right) if rng.random() < 0.5 else (right, left)
    ra, rb = pick_reference(graph, a, rng), pick_reference(graph, b, rng)
    if ra is None or rb is None:
        return []
    true_side, false_side = ("left", "right") if a is left else ("right", "left")
    forms = (("Why is the {a} to the {s} of the {b}?", "What is the {a} doing to the {s} of the {b}?"),
             ("Explain why the {a} stands to the {s} of the {b}.", "Describe the {a} on the {s} side of the {b}."))
    answer = f"That is not right: the {ra.phrase} is to the {true_side} of the {rb.phrase}, not the {false_side}."
    premise = {"kind": "left_of", "a": graph.ann_of(b if a is left else a), "b": graph.ann_of(a if a is left else b)}
    return _negative("nonexistent_relation", forms, {"a": ra.phrase, "b": rb.phrase, "s": false_side}, answer,
                     [true_side], premise, rng)


def _wrong_attribute(obj: SceneObject, attribute: str, rng: random.Random) -> str:
    sig = obj.entity.signature
    if attribute == "colour":
        return rng.choice([c for c in sorted(COLOURS) if c not in (sig.colour, sig.accent)])
    if attribute == "pattern":
        return rng.choice([p for p in PATTERNS if p != sig.pattern])
    if attribute == "shape":
        return rng.choice([s for s in SHAPES if s != sig.shape])
    return str(rng.choice([n for n in CATEGORY_PARTS[obj.entity.category] if n != sig.parts]))


def negative_existent_attribute(graph: GraphScene, rng: random.Random) -> List[Item]:
    entities = [o for o in graph.scene.objects if o.entity is not None]
    obj = rng.choice(entities) if entities else None
    attribute = rng.choice(ATTRIBUTES)
    ref = pick_reference(graph, obj, rng, _HIDING_REFS[attribute]) if obj is not None else None
    if ref is None:
        return []
    wrong, true = _wrong_attribute(obj, attribute, rng), attribute_value(obj, attribute)
    if attribute == "parts":
        fill = {"r": ref.phrase, "v": parts_phrase(obj, int(wrong))}
        forms = (("Why does the {r} have {v}?",), ("Describe the {v} of the {r}.",))
        answer = f"That is wrong: the {ref.phrase} has {parts_phrase(obj, int(true))}, not {number_word(int(wrong))}."
        keywords = [number_word(int(true))]
    else:
        fill = {"r": ref.phrase, "v": wrong}
        forms = {"colour": (("Why is the {r} {v}?",), ("Describe the {v} colour of the {r}.",)),
                 "pattern": (("Why does the {r} have a {v} body?",), ("Describe the {v} body of the {r}.",)),
                 "shape": (("Why is the body of the {r} {v}?",), ("Explain why the {r} has a {v} body.",))}[attribute]
        answer = f"That is wrong: the {ref.phrase} is {true}, not {wrong}." if attribute == "colour" else \
            f"That is wrong: the body of the {ref.phrase} is {true}, not {wrong}."
        keywords = [true]
    return _negative("existent_attribute", forms, fill, answer, keywords,
                     {"kind": "attribute", "object": graph.ann_of(obj), "attribute": attribute, "value": wrong}, rng)


def negative_knowledge(graph: GraphScene, rng: random.Random, entities: Sequence[Entity]) -> List[Item]:
    present = [o for o in graph.scene.objects if o.entity is not None]
    obj = rng.choice(present) if present else None
    ref = pick_reference(graph, obj, rng) if obj is not None else None
    if ref is None:
        return []
    attribute = rng.choice(sorted(obj.entity.facts))
    true = obj.entity.facts[attribute]
    donors = [e for e in entities if e.category == obj.entity.category and e.facts.get(attribute) not in (None, true)]
    if not donors:
        return []
    donor = rng.choice(donors)
    wrong = donor.facts[attribute]
    claim = fact_claim(attribute, wrong)
    forms = (("Why is it that the {r} {c}?", "Is it true that the {r} {c}?"),
             ("Explain why the {r} {c}.", "Tell me more about how the {r} {c}."))
    answer = f"That is false: the {ref.phrase} is {with_article(obj.entity.name)}, which {fact_claim(attribute, true)}, not {wrong}."
    items = _negative("knowledge", forms, {"r": ref.phrase, "c": claim}, answer, [true],
                      {"kind": "fact", "object": graph.ann_of(obj), "attribute": attribute, "value": wrong}, rng)
    for item in items:
        item["source_entity"] = donor.id
    return items


# ----------------------------------------------------------------------------- the generator
class OracleGenerator:
    """Instructions written from the scene graph by rule: every claim checked by construction."""

    name = "oracle"

    def __init__(self, entities: Sequence[Entity]) -> None:
        self.entities = list(entities)

    def generate_all(self, graphs: Sequence[GraphScene], seed: int) -> List[List[Item]]:
        """One list of items per image, each image from its own random stream (images do not shift each other)."""
        return [self.generate(g, random.Random(f"{seed}:lrv:{g.image_id}")) for g in graphs]

    def generate(self, graph: GraphScene, rng: random.Random) -> List[Item]:
        items: List[Item] = []
        for family in POSITIVE_FAMILIES:
            items += family(graph, rng)
        for family in (negative_nonexistent_object, negative_nonexistent_attribute, negative_nonexistent_relation,
                       negative_existent_attribute):
            items += family(graph, rng)
        items += negative_knowledge(graph, rng, self.entities)
        return items


def finish_items(graph: GraphScene, items: Sequence[Item]) -> List[Item]:
    """Ids, image, polarity; answers of 30 words or more are an error of the generator."""
    out = []
    for k, item in enumerate(items):
        n_words = len(str(item["answer"]).split())
        if n_words > MAX_ANSWER_WORDS:
            raise AssertionError(f"{graph.image_id}: answer of {n_words} words: {item['answer']!r}")
        polarity = "negative" if str(item["task"]).startswith("negative_") else "positive"
        out.append({"question_id": f"{graph.image_id}_lrv_{k}", "image": f"{graph.image_id}.jpg",
                    "image_id": graph.image_id, "polarity": polarity, "answer_type": "free", **item})
    return out


def llava_record(item: Item) -> Dict[str, object]:
    return {"id": item["question_id"], "image": f"images/{item['image']}", "conversations": [
        {"from": "human", "value": "<image>\n" + str(item["question"])}, {"from": "gpt", "value": item["answer"]}]}


def lrv_record(item: Item) -> Dict[str, object]:
    """LRV's released format: {image_id, question, answer, task}."""
    return {"image_id": item["image_id"], "question": item["question"], "answer": item["answer"], "task": item["task"]}


# ----------------------------------------------------------------------------- MME-style paired yes/no set
def mme_pairs(graph: GraphScene, rng: random.Random) -> Dict[str, Tuple[str, str]]:
    """subtask -> (question answered yes, question answered no) for one image, where the image allows."""
    pairs: Dict[str, Tuple[str, str]] = {}
    absent = [w for w in GENERIC_OBJECTS + CATEGORIES if w not in graph.words()]
    pairs["existence"] = (f"Is there {with_article(rng.choice(graph.words()))} in this image?",
                          f"Is there {with_article(rng.choice(absent))} in this image?")
    n = len(graph.scene.objects)
    wrong = rng.choice([m for m in (n - 1, n + 1) if m >= 1])
    pairs["count"] = tuple(f"Are there exactly {number_word(m)} {plural('object', m)} in this image?"
                           if m > 1 else "Is there exactly one object in this image?" for m in (n, wrong))
    separated = separated_pairs(graph)
    if separated:
        left, right = rng.choice(separated)
        ra, rb = pick_reference(graph, left, rng), pick_reference(graph, right, rng)
        if ra is not None and rb is not None:
            pairs["position"] = (f"Is the {ra.phrase} to the left of the {rb.phrase}?",
                                 f"Is the {ra.phrase} to the right of the {rb.phrase}?")
    entities = [o for o in graph.scene.objects if o.entity is not None]
    if entities:
        obj = rng.choice(entities)
        ref = pick_reference(graph, obj, rng, ("colour",))
        if ref is not None:
            pairs["color"] = (f"Is the {ref.phrase} {obj.entity.signature.colour}?",
                              f"Is the {ref.phrase} {_wrong_attribute(obj, 'colour', rng)}?")
    return {k: (yes + MME_SUFFIX, no + MME_SUFFIX) for k, (yes, no) in pairs.items()}


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_mme(world_dir: Path, out: Path, graphs: Sequence[GraphScene], seed: int) -> int:
    """The paired yes/no set of the test images, in MME's flat layout, plus its vqa_jsonl view; returns pairs."""
    if (out / "mme").exists():
        shutil.rmtree(out / "mme")
    n_pairs = 0
    for graph in graphs:
        if graph.split != "test":
            continue
        for subtask, (yes, no) in mme_pairs(graph, random.Random(f"{seed}:lrv-mme:{graph.image_id}")).items():
            folder = out / "mme" / subtask
            _link_or_copy(world_dir / "images" / f"{graph.image_id}.jpg", folder / f"{graph.image_id}.jpg")
            formats.write_bytes(folder / f"{graph.image_id}.txt", f"{yes}\tYes\n{no}\tNo\n".encode("utf-8"))
            n_pairs += 1
    # the vqa_jsonl view is what MME's reader makes of the layout (image paths relative to lrv/mme)
    formats.write_jsonl(out / "mme_test.jsonl", read_mme(out / "mme", MME_SUBTASKS))
    return n_pairs


# ----------------------------------------------------------------------------- writing
def generate_items(graphs: Sequence[GraphScene], generator, seed: int) -> Dict[str, List[Item]]:
    """split -> items: `generator` writes the train images' items, the oracle those of val and test (so
    every evaluated premise and keyword is checked against the scene graph)."""
    oracle = OracleGenerator(generator.entities) if not isinstance(generator, OracleGenerator) else generator
    by_split: Dict[str, List[Item]] = {s: [] for s in SPLITS}
    for split in SPLITS:
        chosen = [g for g in graphs if g.split == split]
        writer = generator if split == "train" else oracle
        for graph, items in zip(chosen, writer.generate_all(chosen, seed)):
            by_split[split] += finish_items(graph, items)
    return by_split


def write_split(out: Path, split: str, items: Sequence[Item]) -> Dict[str, int]:
    formats.write_json(out / f"instructions_{split}.json", [lrv_record(i) for i in items])
    formats.write_jsonl(out / f"items_{split}.jsonl", items)
    counts = {}
    for polarity in ("positive", "negative"):
        chosen = [llava_record(i) for i in items if i["polarity"] == polarity]
        formats.write_json(out / f"llava_{polarity}_{split}.json", chosen)
        counts[f"{polarity}_{split}"] = len(chosen)
    return counts


def write_lrv_instructions(world_dir: Path, seed: int, generator=None) -> Dict[str, int]:
    """Write <world_dir>/lrv/ (see the module doc) from the world's saved files; returns counts.

    `generator`: what writes the train split's items, an object with `entities` and
    `generate_all(graphs, seed) -> [items per graph]` (default: the OracleGenerator; `lrv_llm.LlmGenerator`
    asks a chat backend); val and test always come from the oracle. Deterministic for (world, seed, generator)."""
    world_dir = Path(world_dir)
    graphs, entities = load_scene_graphs(world_dir, seed)
    generator = generator or OracleGenerator(entities)
    out = world_dir / "lrv"
    counts: Dict[str, int] = {"images": len(graphs)}
    for split, items in generate_items(graphs, generator, seed).items():
        counts.update(write_split(out, split, items))
    counts["mme_pairs_test"] = write_mme(world_dir, out, graphs, seed)
    counts.update(getattr(generator, "report", {}))
    formats.write_json(out / "counts.json", {"generator": getattr(generator, "name", "custom"), "seed": seed,
                                             "counts": counts})
    return counts
