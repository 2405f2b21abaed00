"""The world's ScienceQA-style benchmark: read back by the ScienceQA reader, checked against the
world's own annotations (an independent oracle: the COCO instances file)."""
import hashlib
import json
from collections import Counter

from mmrag.datasets.scienceqa import read_scienceqa
from mmrag.datasets.world.scienceqa import write_scienceqa


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_world_scienceqa(tiny_world, tmp_path):
    world, _ = tiny_world
    counts = write_scienceqa(world, seed=3)
    root = world / "scienceqa"
    items = {s: read_scienceqa(root, s) for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in items.items()} == {s: counts[s] for s in ("train", "val", "test")}
    ids = [it["id"] for v in items.values() for it in v]
    assert len(ids) == len(set(ids))  # splits are disjoint
    entities = {e["name"]: e for e in json.loads((world / "entities.json").read_text())}
    problems = json.loads((root / "problems.json").read_text())
    kinds = Counter()
    for split, split_items in items.items():
        for it in split_items:
            p = problems[it["id"]]
            kinds[p["skill"]] += 1
            assert 2 <= len(it["choices"]) <= 5 and len(set(it["choices"])) == len(it["choices"])
            correct = it["choices"][it["answer_index"]]
            if p["skill"] == "identify":
                assert it["has_image"] and open(it["image"], "rb").read(2) == b"\xff\xd8"  # a JPEG copy
                # the oracle: the world image with the same bytes, and its annotated categories
                shown = _shown_names(world, it["image"], "test" if split == "test" else "train", entities)
                cat = entities[correct]["category"]
                assert shown.count(correct) == 1
                assert sum(entities[n]["category"] == cat for n in shown) == 1
                assert not any(c in shown for c in it["choices"] if c != correct)
                assert p["question"] == f"Which {cat} is in the picture?"
            elif p["skill"] == "passage":
                assert it["has_text"] and not it["has_image"] and correct in it["hint"]
            else:
                assert not it["has_text"] and not it["has_image"] and correct in it["lecture"]
    assert set(kinds) == {"identify", "passage", "recall"}
    first = _digest(root)
    write_scienceqa(world, seed=3)
    assert _digest(root) == first  # deterministic


def _shown_names(world, image_copy, split, entities):
    coco = json.loads((world / "annotations" / f"instances_{split}.json").read_text())
    data = open(image_copy, "rb").read()
    image = next(im for im in coco["images"] if (world / "images" / im["file_name"]).read_bytes() == data)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    return [names[a["category_id"]] for a in coco["annotations"]
            if a["image_id"] == image["id"] and names[a["category_id"]] in entities]
