"""The world's typed benchmark for MLLM-DataEngine: one question per type per image, answered from
the scene graph, in the DataEngine item format (`mmrag.datasets.dataengine_items`).

Question types (QTYPES):

    existence   "Is there a tree in the image?"                         yes / no
    count       "How many creatures are in the image?"                  a number word
    attribute   "What colour is the creature on the left?"              colour / pattern / shape
    spatial     "Where is the tree relative to the blue creature?"      left / right / above / below
    identity    "What is the name of the striped vehicle?"              the entity's name
    knowledge   "What does the blue creature eat?"                      a fact from entities.json

`write_typed_benchmark(world_dir, seed)` reads the world's saved files (entities.json,
annotations/instances_*.json, annotations/captions_*.json) and writes under world_dir/dataengine/:

    items_{train,val,test}.json          DataEngine items (val: a seeded 15% of the train images)
    llava_{view}_{split}.json            LLaVA records of each view (direct | mc | mc_shuffled)
    eval_{view}_{split}.jsonl            vqa_eval `vqa_jsonl` rows of each view (with qtype)
    counts.json                          items per split and type

Everything derives from the seed and the world's files: the same inputs give byte-identical files.
The same builders make the world-oracle generator's new items (`make_item`), and `check_item`
verifies any item (also an LLM's) against the scene graph by reading its question text.
"""
from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from mmrag.datasets import dataengine_items as de
from mmrag.datasets import formats
from mmrag.datasets.world import grounding
from mmrag.datasets.world.entities import Entity, Signature
from mmrag.datasets.world.language import answers_for, object_phrase, references, with_article
from mmrag.datasets.world.scenes import Scene, SceneObject
from mmrag.datasets.world.vocabulary import (
    CATEGORIES, COLOURS, FACT_VALUES, GENERIC_OBJECTS, NUMBER_WORDS, PATTERNS, QUESTION_TEMPLATES, SHAPES,
)

QTYPES: Tuple[str, ...] = ("existence", "count", "attribute", "spatial", "identity", "knowledge")
SUBDIR = "dataengine"
SPLITS = ("train", "val", "test")
WORDS: Tuple[str, ...] = tuple(GENERIC_OBJECTS) + tuple(CATEGORIES)
EXISTENCE_OPTIONS = ("yes", "no", "maybe", "cannot tell")
RELATIONS = ("left", "right", "above", "below")
RELATION_GAP = 0.1  # fraction of the image side two centres must differ by for a relation to count


@dataclass
class SceneGraph:
    """One image of the world: its scene (objects with boxes and entities), file and captions."""

    scene: Scene
    image: str            # relative to the world folder: images/<file>
    size: int             # square side, pixels
    captions: List[str]
    phrases: Optional[List[Tuple[str, SceneObject]]] = field(default=None, repr=False, compare=False)  # check cache

    @property
    def image_id(self) -> str:
        return Path(self.image).stem


# ----------------------------------------------------------------------------- reading the world
def _entity(record: Dict) -> Entity:
    return Entity(id=record["id"], name=record["name"], category=record["category"],
                  signature=Signature(**record["signature"]), facts=dict(record["facts"]),
                  coco_category_id=record["coco_category_id"], partner=record.get("usual_companion", ""))


def load_scene_graphs(world_dir: Path, splits: Sequence[str] = ("train", "test")) -> Dict[str, List[SceneGraph]]:
    """split ('train' | 'test', the world's own splits) -> its images' scene graphs, in file order."""
    world_dir = Path(world_dir)
    entities = {r["name"]: _entity(r) for r in formats.read_entities(world_dir / "entities.json")}
    out: Dict[str, List[SceneGraph]] = {}
    for split in splits:
        data = formats.read_coco_instances(world_dir / "annotations" / f"instances_{split}.json")
        names = {c["id"]: c["name"] for c in data["categories"]}
        captions: Dict[int, List[str]] = {}
        caption_file = world_dir / "annotations" / f"captions_{split}.json"
        if caption_file.is_file():
            for ann in formats.read_coco_captions(caption_file)["annotations"]:
                captions.setdefault(ann["image_id"], []).append(ann["caption"])
        objects: Dict[int, List[SceneObject]] = {}
        for ann in sorted(data["annotations"], key=lambda a: a["id"]):
            label = names[ann["category_id"]]
            entity = entities.get(label)
            word = entity.category if entity else label
            box = tuple(int(round(v)) for v in ann["bbox"])
            objects.setdefault(ann["image_id"], []).append(SceneObject(label, word, box, entity))
        graphs = []
        for im in data["images"]:
            scene = Scene(index=im["id"], split=split, objects=objects.get(im["id"], []), sky=(0, 0, 0),
                          ground=(0, 0, 0), horizon=0.0)
            graphs.append(SceneGraph(scene, f"images/{im['file_name']}", int(im["width"]), captions.get(im["id"], [])))
        out[split] = graphs
    return out


# ----------------------------------------------------------------------------- question builders
Draft = Dict[str, object]   # question, short_answer, answer (sentence), options pool, subtype


def plural(word: str) -> str:
    return word + "s"


def _options(correct: str, pool: Sequence[str], rng: random.Random) -> Tuple[List[str], str]:
    choices = [correct] + rng.sample(sorted(p for p in set(pool) if p != correct), len(de.LETTERS) - 1)
    rng.shuffle(choices)
    return choices, de.LETTERS[choices.index(correct)]


def _pick_subtype(available: Sequence[str], subtype: Optional[str], rng: random.Random) -> Optional[str]:
    if not available:
        return None
    return subtype if subtype in available else rng.choice(list(available))


def build_existence(g: SceneGraph, rng: random.Random, subtype: Optional[str]) -> Optional[Draft]:
    present = sorted({o.word for o in g.scene.objects})
    absent = [w for w in WORDS if w not in present]
    kind = _pick_subtype([k for k, pool in (("present", present), ("absent", absent)) if pool], subtype, rng)
    if kind is None:
        return None
    word = rng.choice(present if kind == "present" else absent)
    yes = kind == "present"
    return {"question": f"Is there {with_article(word)} in the image?", "short_answer": "yes" if yes else "no",
            "answer": f"Yes, there is {with_article(word)} in the image." if yes else f"No, there is no {word} in the image.",
            "pool": EXISTENCE_OPTIONS, "subtype": kind}


def build_count(g: SceneGraph, rng: random.Random, subtype: Optional[str]) -> Optional[Draft]:
    kind = _pick_subtype(["objects", "word"], subtype, rng)
    if kind == "objects" or not g.scene.objects:
        n, what = len(g.scene.objects), "objects"
    else:
        word = rng.choice(sorted({o.word for o in g.scene.objects}))
        n, what = sum(o.word == word for o in g.scene.objects), plural(word)
    if n >= len(NUMBER_WORDS):
        return None
    return {"question": f"How many {what} are in the image?", "short_answer": NUMBER_WORDS[n],
            "answer": f"There {'is' if n == 1 else 'are'} {NUMBER_WORDS[n]} {what if n != 1 else what[:-1]} in the image.",
            "pool": NUMBER_WORDS, "subtype": kind}


ATTRIBUTE_QUESTIONS = {"colour": ("What colour is the {ref}?", COLOURS), "pattern": ("Which pattern covers the body of the {ref}?", PATTERNS),
                       "shape": ("What shape is the body of the {ref}?", SHAPES)}


def _entity_target(g: SceneGraph, rng: random.Random, avoid_kind: str = "") -> Optional[Tuple[SceneObject, str]]:
    """A random entity object of the scene and a reference phrase (not of kind `avoid_kind`)."""
    candidates = []
    for obj in g.scene.objects:
        if obj.entity is None:
            continue
        refs = [r for r in references(g.scene, obj, g.size) if r.kind != avoid_kind]
        if refs:
            candidates.append((obj, refs))
    if not candidates:
        return None
    obj, refs = rng.choice(candidates)
    return obj, rng.choice(refs).phrase


def build_attribute(g: SceneGraph, rng: random.Random, subtype: Optional[str]) -> Optional[Draft]:
    kind = _pick_subtype(list(ATTRIBUTE_QUESTIONS), subtype, rng)
    found = _entity_target(g, rng, avoid_kind=kind)
    if found is None:
        return None
    obj, ref = found
    value = getattr(obj.entity.signature, "colour" if kind == "colour" else kind)
    template, pool = ATTRIBUTE_QUESTIONS[kind]
    return {"question": template.format(ref=ref), "short_answer": value,
            "answer": f"The {ref} is {value}." if kind != "shape" else f"The body of the {ref} is {value}.",
            "pool": tuple(pool), "subtype": kind}


def relation(a: SceneObject, b: SceneObject, size: int) -> Optional[str]:
    """Where `a` is relative to `b` by box centres (image y grows downwards); None when too close."""
    dx = (a.box[0] + a.box[2] / 2) - (b.box[0] + b.box[2] / 2)
    dy = (a.box[1] + a.box[3] / 2) - (b.box[1] + b.box[3] / 2)
    gap = RELATION_GAP * size
    if abs(dx) >= abs(dy) and abs(dx) >= gap:
        return "left" if dx < 0 else "right"
    if abs(dy) > abs(dx) and abs(dy) >= gap:
        return "above" if dy < 0 else "below"
    return None


RELATION_WORDS = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}


def build_spatial(g: SceneGraph, rng: random.Random, subtype: Optional[str]) -> Optional[Draft]:
    pairs = []
    for a in g.scene.objects:
        for b in g.scene.objects:
            if a is b or a.word == b.word:   # two references to the same word would read ambiguously
                continue
            rel = relation(a, b, g.size)
            ra, rb = references(g.scene, a, g.size), references(g.scene, b, g.size)
            if rel and ra and rb:
                pairs.append((a, b, rel, ra, rb))
    if not pairs:
        return None
    kind = _pick_subtype(sorted({p[2] for p in pairs}), subtype, rng)
    a, b, rel, ra, rb = rng.choice([p for p in pairs if p[2] == kind])
    pa, pb = rng.choice(ra).phrase, rng.choice(rb).phrase
    return {"question": f"Where is the {pa} relative to the {pb}?", "short_answer": rel,
            "answer": f"The {pa} is {RELATION_WORDS[rel]} the {pb}.", "pool": RELATIONS, "subtype": kind}


def build_identity(g: SceneGraph, rng: random.Random, subtype: Optional[str], names: Dict[str, List[str]]) -> Optional[Draft]:
    found = _entity_target(g, rng)
    if found is None:
        return None
    obj, ref = found
    return {"question": f"What is the name of the {ref}?", "short_answer": obj.entity.name,
            "answer": f"The {ref} is {with_article(obj.entity.name)}.", "pool": names[obj.entity.category],
            "subtype": obj.entity.category}


def build_knowledge(g: SceneGraph, rng: random.Random, subtype: Optional[str]) -> Optional[Draft]:
    found = _entity_target(g, rng)
    if found is None:
        return None
    obj, ref = found
    entity = obj.entity
    attribute = _pick_subtype(sorted(entity.facts), subtype, rng)
    value = entity.facts[attribute]
    template = rng.choice(QUESTION_TEMPLATES[(entity.category, attribute)])
    return {"question": template.format(ref=ref), "short_answer": value,
            "answer": f"The {ref} is {with_article(entity.name)}; its {attribute.replace('_', ' ')}: {value}.",
            "pool": FACT_VALUES[(entity.category, attribute)], "subtype": attribute}


def entity_names_by_category(graphs: Sequence[SceneGraph]) -> Dict[str, List[str]]:
    names: Dict[str, set] = {c: set() for c in CATEGORIES}
    for g in graphs:
        for o in g.scene.objects:
            if o.entity is not None:
                names[o.entity.category].add(o.entity.name)
    return {c: sorted(v) for c, v in names.items()}


class ItemMaker:
    """Builds items of any type for scene graphs (the benchmark writer and the oracle generator)."""

    def __init__(self, names_by_category: Dict[str, List[str]]) -> None:
        self.names = names_by_category
        self.builders: Dict[str, Callable] = {
            "existence": build_existence, "count": build_count, "attribute": build_attribute,
            "spatial": build_spatial, "knowledge": build_knowledge,
            "identity": lambda g, rng, sub: build_identity(g, rng, sub, self.names)}

    def make(self, qtype: str, g: SceneGraph, rng: random.Random, item_id: str,
             subtype: Optional[str] = None) -> Optional[de.Item]:
        """A DataEngine item of `qtype` about `g` (None when the scene has nothing to ask of that type)."""
        draft = self.builders[qtype](g, rng, subtype)
        if draft is None or len(set(draft["pool"]) | {draft["short_answer"]}) < len(de.LETTERS):
            return None
        options, letter = _options(str(draft["short_answer"]), draft["pool"], rng)
        return {"id": item_id, "instruction": draft["question"], "answer": draft["answer"],
                "short_answer": draft["short_answer"], "options": options, "choice_answer": letter,
                "image": g.image, "qtype": qtype, "subtype": draft["subtype"]}


# ----------------------------------------------------------------------------- the oracle check
_NUMBERS = {w: i for i, w in enumerate(NUMBER_WORDS)}
KNOWLEDGE_CUES = (("diet", ("eat", "food", "diet", "feed")), ("habitat", ("live", "home", "habitat")),
                  ("predator", ("hunt", "prey", "predator", "enem")),
                  ("origin", ("come from", "region", "origin", "native", "first found", "first made", "first built")),
                  ("soil", ("soil", "ground")), ("pollinator", ("pollin", "pollen")), ("material", ("made of", "material", "made from")),
                  ("user", ("who", "craftspeople", "works with", "user")), ("fuel", ("run on", "power", "fuel")),
                  ("terrain", ("travel", "terrain")), ("used_for", ("used for", "make with", "made for", "built for", "job", "use")))


def normal(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9\- ]", " ", str(text).lower()).split())


def object_phrases(g: SceneGraph) -> List[Tuple[str, SceneObject]]:
    """(phrase, object) for every phrase that names exactly one object of the scene, longest first
    (computed once per scene graph)."""
    if g.phrases is None:
        g.phrases = _object_phrases(g)
    return g.phrases


def _object_phrases(g: SceneGraph) -> List[Tuple[str, SceneObject]]:
    phrases: Dict[str, List[SceneObject]] = {}
    for obj in g.scene.objects:
        candidates = {r.phrase for r in references(g.scene, obj, g.size)} | {obj.word}
        if obj.entity is not None:
            sig = obj.entity.signature
            candidates |= {object_phrase(obj), f"{sig.colour} {obj.word}", f"{sig.pattern} {obj.word}",
                           f"{sig.shape} {obj.word}", f"{sig.colour} {sig.pattern} {sig.shape} {obj.word}",
                           f"{sig.colour} {sig.shape} {obj.word}", obj.entity.name}
        for phrase in candidates:
            phrases.setdefault(normal(phrase), []).append(obj)
    unique = [(p, objs[0]) for p, objs in phrases.items() if len({id(o) for o in objs}) == 1]
    return sorted(unique, key=lambda po: -len(po[0]))


def mentions(text: str, g: SceneGraph) -> List[SceneObject]:
    """The scene objects the text names, in order of first mention (longest phrases win overlaps)."""
    text = f" {normal(text)} "
    taken = [False] * len(text)
    found: List[Tuple[int, SceneObject]] = []
    for phrase, obj in object_phrases(g):
        for m in re.finditer(rf"(?<= ){re.escape(phrase)}(?= )", text):
            if not any(taken[m.start():m.end()]):
                taken[m.start():m.end()] = [True] * (m.end() - m.start())
                found.append((m.start(), obj))
    out: List[SceneObject] = []
    for _, obj in sorted(found, key=lambda f: f[0]):
        if all(obj is not o for o in out):
            out.append(obj)
    return out


def _truth(item: de.Item, g: SceneGraph) -> Tuple[Optional[List[str]], str]:
    """(accepted answers, '') or (None, cause) for an item's question read against the scene graph."""
    q, qtype = normal(item["instruction"]), item["qtype"]
    if qtype == "existence":
        words = [w for w in WORDS if re.search(rf"\b{w}s?\b", q)]
        if len(words) != 1:
            return None, "no single object word"
        return (["yes"] if any(o.word == words[0] for o in g.scene.objects) else ["no"]), ""
    if qtype == "count":
        m = re.search(r"how many (\w+)", q)
        if not m:
            return None, "not a how-many question"
        word = m.group(1)
        if word in ("objects", "things", "items"):
            n = len(g.scene.objects)
        elif word.rstrip("s") in WORDS or word in WORDS:
            n = sum(o.word == word.rstrip("s") or o.word == word for o in g.scene.objects)
        else:
            return None, f"unknown object word '{word}'"
        return [NUMBER_WORDS[n], str(n)] if n < len(NUMBER_WORDS) else [str(n)], ""
    targets = mentions(item["instruction"], g)
    if qtype == "spatial":
        if len(targets) != 2:
            return None, f"{len(targets)} grounded objects (need 2)"
        rel = relation(targets[0], targets[1], g.size)
        return ([rel] if rel else None), ("" if rel else "objects too close to tell")
    if len(targets) != 1:
        return None, f"{len(targets)} grounded objects (need 1)"
    entity = targets[0].entity
    if entity is None:
        return None, "not an entity"
    if qtype == "identity":
        return [entity.name], ""
    if qtype == "attribute":
        for kind, cues in (("colour", ("colour", "color")), ("pattern", ("pattern",)), ("shape", ("shape",))):
            if any(re.search(rf"\b{c}", q) for c in cues):
                return [str(getattr(entity.signature, kind))], ""
        return None, "no attribute named"
    if qtype == "knowledge":
        for attribute, cues in KNOWLEDGE_CUES:
            if attribute in entity.facts and any(re.search(rf"\b{c}", q) for c in cues):
                return answers_for(entity.facts[attribute]), ""
        return None, "no known fact asked"
    return None, f"unknown qtype '{qtype}'"


def check_item(item: de.Item, g: SceneGraph) -> Tuple[bool, str]:
    """(True, 'ok') when the item's short answer is what the scene graph says, else (False, cause)."""
    truth, cause = _truth(item, g)
    if truth is None:
        return False, f"unverifiable: {cause}"
    if normal(item["short_answer"]) not in {normal(t) for t in truth}:
        return False, f"wrong answer: '{item['short_answer']}' (scene graph: '{truth[0]}')"
    return True, "ok"


# ----------------------------------------------------------------------------- the writer
def split_images(graphs: Dict[str, List[SceneGraph]], seed: int) -> Dict[str, List[SceneGraph]]:
    """train / val (a seeded share of the world's train images) / test (the world's test images)."""
    by_id = {g.image_id: g for g in graphs["train"]}
    train, val = grounding.split_val_images(sorted(by_id), random.Random(f"{seed}:dataengine-val"))
    return {"train": [by_id[i] for i in train], "val": [by_id[i] for i in val], "test": list(graphs["test"])}


def benchmark_items(images: Sequence[SceneGraph], maker: ItemMaker, seed: int) -> List[de.Item]:
    """One item per type per image where the scene allows it; each image's draws seeded by its id."""
    items = []
    for g in images:
        rng = random.Random(zlib.crc32(f"{seed}:typed:{g.image_id}".encode()))
        for qtype in QTYPES:
            item = maker.make(qtype, g, rng, f"{g.image_id}_{qtype}")
            if item is not None:
                items.append(item)
    return items


def write_typed_benchmark(world_dir: Path, seed: int) -> Dict[str, object]:
    """Write world_dir/dataengine/ (see the module doc); returns the counts (also in counts.json)."""
    world_dir = Path(world_dir)
    graphs = load_scene_graphs(world_dir)
    maker = ItemMaker(entity_names_by_category(graphs["train"] + graphs["test"]))
    out = world_dir / SUBDIR
    counts: Dict[str, object] = {"seed": seed, "qtypes": list(QTYPES)}
    for split, images in split_images(graphs, seed).items():
        items = benchmark_items(images, maker, seed)
        formats.write_json(out / f"items_{split}.json", items)
        for view in de.VIEWS:
            formats.write_json(out / f"llava_{view}_{split}.json", de.llava_records(items, [view], seed))
            formats.write_jsonl(out / f"eval_{view}_{split}.jsonl", [de.eval_row(it, view, seed) for it in items])
        counts[split] = {"images": len(images), "items": len(items),
                         "by_qtype": {t: sum(it["qtype"] == t for it in items) for t in QTYPES}}
    formats.write_json(out / "counts.json", counts)
    return counts
