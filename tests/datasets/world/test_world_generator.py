"""The generated world: files in the real formats, deterministic, and retrieval needing image and corpus."""
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from mmrag.datasets import formats
from mmrag.datasets.world import WorldExistsError, generate_world, get_preset
from mmrag.datasets.world.corpus import MAX_WORDS, MIN_WORDS
from mmrag.datasets.world.vocabulary import CATEGORIES, COLOURS, PATTERNS

SPLITS = ("train", "test")


def _located_free_bytes(root: Path, path: Path) -> bytes:
    """The file's bytes, with the world folder's own path blanked where a file names it (the GAVIE
    items give the path of their vocabulary as the world folder was given) and world.json's hashes
    of those files dropped."""
    data = path.read_bytes()
    if path.parent.name == "gavie" or path.name == "world.json":
        data = data.replace(str(root).encode(), b"<world>")
    if path.name == "world.json":
        meta = json.loads(data)
        meta["files"] = {k: v for k, v in meta["files"].items() if not k.startswith("gavie/items_")}
        data = json.dumps(meta, sort_keys=True).encode()
    return data


def _file_hashes(root: Path):
    return {str(p.relative_to(root)): hashlib.sha256(_located_free_bytes(root, p)).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _questions(world):
    return [q for split in SPLITS for q in formats.read_knowledge_questions(world / "knowledge" / f"{split}.json")]


def test_every_file_reads_with_the_format_readers(tiny_world):
    world, meta = tiny_world
    for split in SPLITS:
        inst = formats.read_coco_instances(world / "annotations" / f"instances_{split}.json")
        formats.read_coco_captions(world / "annotations" / f"captions_{split}.json")
        formats.read_coco_detections(world / "annotations" / f"detections_{split}.json", inst)
        formats.assert_images_exist("coco", inst, world / "images")
        llava = formats.read_llava_conversations(world / "llava" / f"instruct_{split}.json")
        formats.assert_images_exist("llava", llava, world)
        formats.assert_images_exist("knowledge", formats.read_knowledge_questions(world / "knowledge" / f"{split}.json"), world / "images")
    formats.assert_images_exist("image_captions", formats.read_image_captions(world / "image_captions.json"), world)
    formats.assert_images_exist("regions", formats.read_region_descriptions(world / "regions" / "region_descriptions.json"), world / "images")
    for strategy in ("random", "popular", "adversarial"):
        rows = formats.read_pope_jsonl(world / "pope" / f"{strategy}.jsonl")
        formats.assert_images_exist("pope", rows, world / "images")
        assert Counter(r["label"] for r in rows) == {"yes": len(rows) // 2, "no": len(rows) // 2} and rows
    assert len(formats.read_entities(world / "entities.json")) == get_preset("tiny").n_entities
    assert len(list((world / "images").glob("*.jpg"))) == meta["counts"]["images"] == 60


def test_world_json_hashes_match_the_files(tiny_world):
    world, _ = tiny_world
    meta = formats.read_world_meta(world / "world.json")
    on_disk = {str(p.relative_to(world)): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(world.rglob("*")) if p.is_file()}
    on_disk.pop("world.json")
    assert meta["files"] == on_disk
    assert meta["preset"] == "tiny" and meta["seed"] == 0


def test_same_seed_gives_identical_files_and_other_seed_differs(tiny_world, tmp_path):
    world, _ = tiny_world
    generate_world("tiny", 0, tmp_path / "again", progress=False)
    assert _file_hashes(tmp_path / "again") == _file_hashes(world)
    generate_world("tiny", 1, tmp_path / "other", progress=False)
    derived = ("scienceqa/", "dataengine/", "lrv/", "gavie/")  # file sets that depend on the draws (per-problem images)
    other = {k: v for k, v in _file_hashes(tmp_path / "other").items() if not k.startswith(derived)}
    assert other.keys() == {k for k in _file_hashes(world) if not k.startswith(derived)}
    differing = [k for k, v in other.items() if v != _file_hashes(world)[k]]
    assert len(differing) > 0.9 * len(other)


def test_every_answer_is_stated_by_the_entity_and_gold_ids_are_exact(tiny_world):
    world, _ = tiny_world
    text = dict(formats.read_corpus_csv(world / "corpus.csv"))
    entities = {e["id"]: e for e in formats.read_entities(world / "entities.json")}
    questions = _questions(world)
    assert questions
    for q in questions:
        name = entities[q["entity_id"]]["name"]
        # the entity's own passages introduce it in their first sentence; naming distractors 'confuse' two
        own = [pid for pid, t in text.items()
               if re.search(rf"\b{name}\b", t.split(". ")[0], re.I) and "confuse" not in t]
        with_answer = [pid for pid in own if any(a.lower() in text[pid].lower() for a in q["output"])]
        assert with_answer, q
        assert q["gold_passage_ids"] == sorted(with_answer)
        assert entities[q["entity_id"]]["facts"][q["qtype"]] == q["output"][0]
        assert q["input"] == q["question"] + " " + q["caption"]


def test_answers_and_names_stay_out_of_image_text(tiny_world):
    world, _ = tiny_world
    names = [e["name"] for e in formats.read_entities(world / "entities.json")]
    name_pattern = re.compile(r"\b(" + "|".join(names) + r")\b", re.I)
    for q in _questions(world):
        seen = (q["question"] + " " + q["caption"]).lower()
        assert not any(a.lower() in seen for a in q["output"]), q
        assert not name_pattern.search(q["input"])
    for split in SPLITS:
        for item in formats.read_llava_conversations(world / "llava" / f"instruct_{split}.json"):
            assert not any(name_pattern.search(t["value"]) for t in item["conversations"])
    for item in formats.read_region_descriptions(world / "regions" / "region_descriptions.json"):
        assert not any(name_pattern.search(r["phrase"]) for r in item["regions"])


def test_question_wording_fits_at_least_k_entities(tiny_world):
    """Brute-force oracle: entities of the question's category with its attribute and named looks."""
    world, meta = tiny_world
    k = meta["preset_config"]["min_question_ambiguity"]
    entities = formats.read_entities(world / "entities.json")
    for q in _questions(world):
        words = set(re.findall(r"[a-z-]+", q["question"].lower()))
        (category,) = [c for c in CATEGORIES if c in words]
        colours = words & set(COLOURS)
        patterns = words & set(PATTERNS)
        fitting = [e for e in entities if e["category"] == category and q["qtype"] in e["facts"]
                   and all(e["signature"]["colour"] == c for c in colours)
                   and all(e["signature"]["pattern"] == p for p in patterns)]
        assert len(fitting) >= k, q["question"]


def test_corpus_passages_have_the_promised_length_and_distractors(tiny_world):
    world, meta = tiny_world
    passages = formats.read_corpus_csv(world / "corpus.csv")
    lengths = [len(p.text.split()) for p in passages]
    assert MIN_WORDS <= min(lengths) and max(lengths) <= MAX_WORDS
    assert meta["counts"]["passages"] > meta["counts"]["entity_passages"]  # distractors exist
    assert any(p.text.startswith("Many kinds of") for p in passages)
    assert any("confuse" in p.text for p in passages)


def test_object_frequencies_are_skewed_and_pope_strategies_differ(tiny_world):
    world, _ = tiny_world
    inst = formats.read_coco_instances(world / "annotations" / "instances_train.json")
    freq = sorted(Counter(a["category_id"] for a in inst["annotations"]).values(), reverse=True)
    assert freq[0] >= 4 * freq[len(freq) // 2]
    negatives = {s: Counter(r["text"] for r in formats.read_pope_jsonl(world / "pope" / f"{s}.jsonl") if r["label"] == "no")
                 for s in ("random", "popular", "adversarial")}
    assert len(negatives["popular"]) < len(negatives["random"])
    assert negatives["popular"] != negatives["adversarial"] != negatives["random"]


def test_detections_are_noisy_copies_of_the_boxes(tiny_world):
    world, _ = tiny_world
    inst = formats.read_coco_instances(world / "annotations" / "instances_train.json")
    dets = formats.read_coco_detections(world / "annotations" / "detections_train.json", inst)
    true_boxes = {tuple(a["bbox"]) for a in inst["annotations"]}
    assert 0.7 * len(inst["annotations"]) <= len(dets) <= 1.5 * len(inst["annotations"])
    assert not any(tuple(d["bbox"]) in true_boxes for d in dets)


def test_refuses_to_overwrite_a_different_world_unless_forced(tiny_world, tmp_path):
    out = tmp_path / "w"
    generate_world("tiny", 0, out, progress=False)
    (out / "images" / "stale.jpg").write_bytes(b"old")
    with pytest.raises(WorldExistsError, match="preset=tiny seed=2"):
        generate_world("tiny", 2, out, progress=False)
    generate_world("tiny", 0, out, progress=False)  # the same world may be regenerated
    assert not (out / "images" / "stale.jpg").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with pytest.raises(WorldExistsError):
        generate_world("tiny", 0, other, progress=False)
    meta = generate_world("tiny", 2, out, force=True, progress=False)
    assert json.loads((out / "world.json").read_text())["seed"] == 2 == meta["seed"]
