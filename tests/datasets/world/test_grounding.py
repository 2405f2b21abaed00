"""Balanced presence questions of the world (llava/yesno_balanced_*.json, the instruct presence turns),
checked against the COCO instances files and against the files of the generator at commit 8a36454."""
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

from mmrag.datasets import formats

ORACLE = Path(__file__).with_name("generator_8a36454_tiny0_sha256.json")
NEW_FILES = {f"llava/{kind}_{s}.json" for kind in ("yesno_balanced", "objects", "yesno_listed")
             for s in ("train", "val", "test")} | {f"pope_val/{s}.jsonl" for s in ("all", "random", "popular", "adversarial")}
QUESTION = re.compile(r"^<image>\nIs there (a|an) (\S+) in the image\?$")


def _objects_by_file(world):
    """image file name -> names annotated in it, and -> words a caption uses (category or generic word)."""
    names, words = {}, {}
    for split in ("train", "test"):
        inst = json.loads((world / "annotations" / f"instances_{split}.json").read_text())
        cats = {c["id"]: c for c in inst["categories"]}
        files = {im["id"]: im["file_name"] for im in inst["images"]}
        for f in files.values():
            names[f], words[f] = set(), set()
        for ann in inst["annotations"]:
            cat = cats[ann["category_id"]]
            names[files[ann["image_id"]]].add(cat["name"])
            words[files[ann["image_id"]]].add(cat["name"] if cat["supercategory"] == "object" else cat["supercategory"])
    return names, words


def _split_files(world, split):
    return {im["file_name"] for im in json.loads((world / "annotations" / f"instances_{split}.json").read_text())["images"]}


def _yesno(world, split):
    """(image file, name, answer) of every record, parsed from the written text."""
    rows = []
    for rec in formats.read_llava_conversations(world / "llava" / f"yesno_balanced_{split}.json"):
        human, gpt = rec["conversations"]
        article, name = QUESTION.match(human["value"]).groups()
        assert article == ("an" if name[0] in "aeiou" else "a")
        assert gpt["value"] in ("Yes.", "No.")
        rows.append((rec["image"].split("/")[-1], name, gpt["value"]))
    return rows


def test_every_name_is_answered_yes_as_often_as_no_in_every_split(tiny_world):
    world, _ = tiny_world
    for split in ("train", "val", "test"):
        rows = _yesno(world, split)
        assert rows, split
        yes = Counter(name for _, name, a in rows if a == "Yes.")
        no = Counter(name for _, name, a in rows if a == "No.")
        assert yes == no, split


def test_answers_agree_with_the_annotations(tiny_world):
    world, _ = tiny_world
    names, _ = _objects_by_file(world)
    for split in ("train", "val", "test"):
        for image, name, answer in _yesno(world, split):
            assert (name in names[image]) == (answer == "Yes."), (split, image, name, answer)


def test_val_is_held_out_train_and_no_image_is_shared_between_splits(tiny_world):
    world, _ = tiny_world
    images = {s: {image for image, _, _ in _yesno(world, s)} for s in ("train", "val", "test")}
    assert images["train"] <= _split_files(world, "train") and images["val"] <= _split_files(world, "train")
    assert images["test"] <= _split_files(world, "test")
    assert not images["train"] & images["val"] and not images["train"] & images["test"]
    assert not images["val"] & images["test"]


def test_negatives_come_from_every_pope_strategy(tiny_world):
    world, _ = tiny_world
    recs = formats.read_llava_conversations(world / "llava" / "yesno_balanced_train.json")
    used = Counter(r["strategy"] for r in recs if r["conversations"][1]["value"] == "No.")
    assert set(used) == {"random", "popular", "adversarial"}


def test_instruct_presence_turns_are_half_yes_and_true(tiny_world):
    world, _ = tiny_world
    _, words = _objects_by_file(world)
    for split in ("train", "test"):
        answers = []
        for rec in formats.read_llava_conversations(world / "llava" / f"instruct_{split}.json"):
            turns = rec["conversations"]
            for i, turn in enumerate(turns):
                m = re.search(r"Is there an? (\S+) in the image\? Answer yes or no\.$", turn["value"])
                if m:
                    answers.append(turns[i + 1]["value"])
                    assert (m.group(1) in words[rec["image"].split("/")[-1]]) == (turns[i + 1]["value"] == "yes")
        assert Counter(answers)["yes"] == len(answers) // 2, split


def _masked_instruct(path):
    """The instruct records with the presence question and answer blanked (the only turns that changed)."""
    out = []
    for rec in json.loads(path.read_text()):
        turns = [dict(t) for t in rec["conversations"]]
        for i, t in enumerate(turns):
            if t["from"] == "human" and t["value"].split("\n")[-1].startswith("Is there "):
                t["value"], turns[i + 1]["value"] = "<presence question>", "<presence answer>"
        out.append({**rec, "conversations": turns})
    return hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()


def test_every_other_file_is_byte_identical_to_the_generator_before_the_change(tiny_world):
    """Oracle: sha256 of every file the generator at commit 8a36454 wrote for tiny, seed 0."""
    world, _ = tiny_world
    oracle = json.loads(ORACLE.read_text())
    derived = ("scienceqa/", "dataengine/", "lrv/", "gavie/")  # later benchmarks: their own tests check them
    now = {str(p.relative_to(world)): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in sorted(world.rglob("*")) if p.is_file() and not str(p.relative_to(world)).startswith(derived)}
    assert set(now) == set(oracle["files"]) | NEW_FILES
    changed = {k for k, v in oracle["files"].items() if now[k] != v}
    assert changed == {"world.json", "llava/instruct_train.json", "llava/instruct_test.json"}
    for split in ("train", "test"):
        assert _masked_instruct(world / "llava" / f"instruct_{split}.json") == oracle["instruct_masked"][split]


def _left_to_right_names(world):
    """image file -> annotated names ordered by the centre x of their COCO boxes (ties by name)."""
    out = {}
    for split in ("train", "test"):
        inst = json.loads((world / "annotations" / f"instances_{split}.json").read_text())
        cats = {c["id"]: c["name"] for c in inst["categories"]}
        files = {im["id"]: im["file_name"] for im in inst["images"]}
        boxes = {}
        for ann in inst["annotations"]:
            x, _, w, _ = ann["bbox"]
            boxes.setdefault(files[ann["image_id"]], []).append((x + w / 2.0, cats[ann["category_id"]]))
        out.update({f: [name for _, name in sorted(b)] for f, b in boxes.items()})
    return out


def test_object_list_text_by_hand():
    from mmrag.datasets.world.grounding import object_list_text

    assert object_list_text(["troukrux", "ovel", "tree"]) == "a troukrux, an ovel and a tree."
    assert object_list_text(["rock"]) == "a rock."
    assert object_list_text(["ovel", "rock"]) == "an ovel and a rock."


def test_listing_names_every_annotated_object_left_to_right(tiny_world):
    world, _ = tiny_world
    expected = _left_to_right_names(world)
    for split in ("train", "val", "test"):
        yesno_images = {image for image, _, _ in _yesno(world, split)}
        recs = formats.read_llava_conversations(world / "llava" / f"objects_{split}.json")
        assert {r["image"].split("/")[-1] for r in recs} >= yesno_images, split
        for rec in recs:
            human, gpt = rec["conversations"]
            assert human["value"] == "<image>\nList the objects in the image."
            listed = re.findall(r"\ban? (\S+?)(?=,| and |\.$)", gpt["value"])
            assert listed == expected[rec["image"].split("/")[-1]], rec["id"]


def test_listed_presence_records_are_the_balanced_questions_after_the_listing(tiny_world):
    world, _ = tiny_world
    for split in ("train", "val", "test"):
        plain = formats.read_llava_conversations(world / "llava" / f"yesno_balanced_{split}.json")
        listed = formats.read_llava_conversations(world / "llava" / f"yesno_listed_{split}.json")
        listing = {r["image"]: r["conversations"] for r in
                   formats.read_llava_conversations(world / "llava" / f"objects_{split}.json")}
        assert len(plain) == len(listed)
        for p, q in zip(plain, listed):
            assert q["image"] == p["image"] and q["id"] == p["id"] + "_listed"
            turns = q["conversations"]
            assert turns[:2] == listing[p["image"]]
            assert turns[2]["value"] == p["conversations"][0]["value"].replace("<image>\n", "")
            assert turns[3] == p["conversations"][1]


def test_val_pope_lines_are_the_val_presence_questions(tiny_world):
    world, _ = tiny_world
    parsed = _yesno(world, "val")
    rows = [json.loads(line) for line in (world / "pope_val" / "all.jsonl").read_text().splitlines()]
    assert [(r["image"], re.search(r"an? (\S+) in", r["text"]).group(1), r["label"]) for r in rows] == \
        [(image, name, answer[:-1].lower()) for image, name, answer in parsed]
    by_strategy = sum((world / "pope_val" / f"{s}.jsonl").read_text().count("\n") for s in ("random", "popular", "adversarial"))
    assert by_strategy == len(rows)
