"""A ScienceQA-style multiple-choice benchmark of the world, in ScienceQA's own layout.

`write_scienceqa(world_dir, seed)` reads the world's saved files (entities.json,
annotations/instances_{train,test}.json, image_captions.json, corpus.csv) and writes

    <world_dir>/scienceqa/problems.json     {pid: {question, choices, answer, hint, image, lecture,
                                             solution, split, subject, topic, skill}}
    <world_dir>/scienceqa/pid_splits.json   {"train", "val", "test": [pid]}
    <world_dir>/scienceqa/images/<split>/<pid>/image.jpg   (a copy of the world image's bytes)

so `mmrag.datasets.scienceqa.read_scienceqa` reads it as it reads the real ScienceQA. Three kinds of
problem, 2-5 options each (the correct one and distinct wrong ones of the same kind, shuffled):

- identify (IMG; half of them also TXT): "Which <category> is in the picture?" about an image that
  shows exactly one entity of that category; the wrong options are entities of the category that
  are not in the picture. Half carry the image's caption as hint (it names colours and patterns,
  never an entity). Needs the image (or the caption) and what each entity looks like.
- passage (TXT): a question about one fact of an entity with a corpus passage stating it as hint:
  answerable from the text alone.
- recall (NO): the same kind of question without hint or image: needs the fact itself (in the
  lectures of training problems and in retrieved examples).
Lecture: a corpus passage about the entity (the one stating the fact where there is one);
solution: one sentence giving the reason. Train images give train and val problems (val: a seeded
tenth of them), test images test problems; entity-fact problems are split 70/10/20 by a seeded draw.
Deterministic: the same world and seed give byte-identical files.
"""
from __future__ import annotations

import csv
import json
import random
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from mmrag.datasets.world.vocabulary import QUESTION_TEMPLATES, attributes_of

SUBDIR = "scienceqa"
MIN_OPTIONS, MAX_OPTIONS = 2, 5
VAL_FRACTION = 0.1
FACT_SPLITS = (("train", 0.7), ("val", 0.1), ("test", 0.2))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _entity_passages(corpus_csv: Path, entities: Sequence[Dict[str, Any]]) -> Dict[str, List[str]]:
    """entity id -> corpus passages that name it and state at least one of its fact values."""
    with open(corpus_csv, newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    out: Dict[str, List[str]] = {}
    for ent in entities:
        name = re.compile(rf"\b{re.escape(ent['name'])}\b", re.IGNORECASE)
        out[ent["id"]] = [t for t in texts if name.search(t) and any(v in t for v in ent["facts"].values())]
    return out


def _options(correct: str, pool: Sequence[str], rng: random.Random) -> Tuple[List[str], int]:
    """2-5 distinct options (correct + wrong ones from `pool`), shuffled; and the correct one's index."""
    wrong = sorted({p for p in pool if p != correct})
    n = min(rng.randint(MIN_OPTIONS, MAX_OPTIONS) - 1, len(wrong))
    choices = rng.sample(wrong, n) + [correct]
    rng.shuffle(choices)
    return choices, choices.index(correct)


def _looks(ent: Dict[str, Any]) -> str:
    sig = ent["signature"]
    return f"{sig['colour']} {sig['pattern']} {ent['category']}"


def _identify_problems(world: Path, split: str, entities: Dict[str, Dict[str, Any]], by_category: Dict[str, List[str]],
                       passages: Dict[str, List[str]], captions: Dict[str, str], rng: random.Random) -> List[Dict[str, Any]]:
    """One identify problem per image that shows exactly one entity of some category."""
    coco = _read_json(world / "annotations" / f"instances_{split}.json")
    entity_of_cat = {e["coco_category_id"]: e["id"] for e in entities.values()}
    shown: Dict[int, List[str]] = defaultdict(list)
    for ann in coco["annotations"]:
        if ann["category_id"] in entity_of_cat:
            shown[ann["image_id"]].append(entity_of_cat[ann["category_id"]])
    problems = []
    for image in sorted(coco["images"], key=lambda im: im["id"]):
        in_image = shown.get(image["id"], [])
        counts: Dict[str, List[str]] = defaultdict(list)
        for eid in in_image:
            counts[entities[eid]["category"]].append(eid)
        single = sorted(cat for cat, ids in counts.items() if len(ids) == 1)
        if not single:
            continue
        category = rng.choice(single)
        ent = entities[counts[category][0]]
        names = [entities[e]["name"] for e in by_category[category] if e not in set(in_image)]
        choices, answer = _options(ent["name"], names, rng)
        caption = captions.get(f"images/{image['file_name']}", "")
        problems.append({
            "question": f"Which {category} is in the picture?", "choices": choices, "answer": answer,
            "hint": caption if rng.random() < 0.5 else "", "image": "image.jpg",
            "lecture": rng.choice(passages[ent["id"]]) if passages[ent["id"]] else "",
            "solution": f"The {category} in the picture is the {_looks(ent)}: that is the {ent['name']}.",
            "subject": "world", "topic": category, "skill": "identify", "_source": f"images/{image['file_name']}",
        })
    return problems


def _fact_problems(entities: Dict[str, Dict[str, Any]], passages: Dict[str, List[str]],
                   rng: random.Random) -> List[Dict[str, Any]]:
    """One problem per (entity, attribute): passage (TXT) or recall (NO), alternately by a seeded draw."""
    values: Dict[Tuple[str, str], List[str]] = defaultdict(list)
    for ent in entities.values():
        for attr, value in ent["facts"].items():
            values[(ent["category"], attr)].append(value)
    problems = []
    for eid in sorted(entities):
        ent = entities[eid]
        for attr in attributes_of(ent["category"]):
            value = ent["facts"][attr]
            stating = [p for p in passages[eid] if value in p]
            kind = "passage" if stating and rng.random() < 0.5 else "recall"
            template = QUESTION_TEMPLATES[(ent["category"], attr)][0]
            choices, answer = _options(value, values[(ent["category"], attr)], rng)
            lecture = rng.choice(stating) if stating else (rng.choice(passages[eid]) if passages[eid] else "")
            problems.append({
                "question": template.format(ref=ent["name"]), "choices": choices, "answer": answer,
                "hint": rng.choice(stating) if kind == "passage" else "", "image": None, "lecture": lecture,
                "solution": f"The {attr.replace('_', ' ')} of the {ent['name']} is {value}.",
                "subject": "world", "topic": ent["category"], "skill": kind,
            })
    return problems


def _split_identify(problems: List[Dict[str, Any]], rng: random.Random) -> List[str]:
    n_val = int(round(VAL_FRACTION * len(problems)))
    order = list(range(len(problems)))
    rng.shuffle(order)
    val = set(order[:n_val])
    return ["val" if i in val else "train" for i in range(len(problems))]


def _split_facts(n: int, rng: random.Random) -> List[str]:
    out = []
    for _ in range(n):
        r, acc = rng.random(), 0.0
        for name, share in FACT_SPLITS:
            acc += share
            if r < acc:
                break
        out.append(name)
    return out


def write_scienceqa(world_dir: Path, seed: int) -> Dict[str, int]:
    """Write <world_dir>/scienceqa/ (see the module doc); returns counts per split and kind."""
    world_dir = Path(world_dir)
    rng = random.Random(f"{seed}:scienceqa")
    entity_list = _read_json(world_dir / "entities.json")
    entities = {e["id"]: e for e in entity_list}
    by_category: Dict[str, List[str]] = defaultdict(list)
    for e in entity_list:
        by_category[e["category"]].append(e["id"])
    passages = _entity_passages(world_dir / "corpus.csv", entity_list)
    captions = {c["image"]: c["caption"] for c in _read_json(world_dir / "image_captions.json")}
    train_img = _identify_problems(world_dir, "train", entities, by_category, passages, captions, rng)
    test_img = _identify_problems(world_dir, "test", entities, by_category, passages, captions, rng)
    facts = _fact_problems(entities, passages, rng)
    labelled = (list(zip(train_img, _split_identify(train_img, rng))) + [(p, "test") for p in test_img]
                + list(zip(facts, _split_facts(len(facts), rng))))
    return _write(world_dir / SUBDIR, world_dir, labelled)


def _write(out: Path, world_dir: Path, labelled: List[Tuple[Dict[str, Any], str]]) -> Dict[str, int]:
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    problems, splits = {}, {"train": [], "val": [], "test": []}
    counts: Dict[str, int] = defaultdict(int)
    for n, (problem, split) in enumerate(labelled):
        pid = f"w{n:06d}"
        source = problem.pop("_source", None)
        if source:
            folder = tmp / "images" / split / pid
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(world_dir / source, folder / "image.jpg")
        problems[pid] = {**problem, "split": split}
        splits[split].append(pid)
        counts[f"{split}_{problem['skill']}"] += 1
        counts[split] += 1
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "problems.json").write_text(json.dumps(problems, indent=1, sort_keys=True), encoding="utf-8")
    (tmp / "pid_splits.json").write_text(json.dumps(splits), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)  # nothing half-written: the folder appears complete or not at all
    return dict(sorted(counts.items()))
