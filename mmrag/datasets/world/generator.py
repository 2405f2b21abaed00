"""Generate a synthetic multimodal knowledge world and write it in the real datasets' formats.

Layout under the output folder (paths fixed; other modules rely on them):
  world.json, entities.json, images/<image_id>.jpg, annotations/{instances,captions,detections}_{split}.json,
  corpus.csv, knowledge/{split}.json, image_captions.json, llava/instruct_{split}.json,
  llava/{yesno_balanced,objects,yesno_listed}_{train,val,test}.json, regions/region_descriptions.json,
  pope/{random,popular,adversarial}.jsonl (test split), pope_val/{all,random,popular,adversarial}.jsonl
  (the val presence questions as POPE lines, for choosing settings without the test split);
  then the later systems' benchmarks, written from those files (`derived_writers`): scienceqa/ (CaMML),
  dataengine/ (MLLM-DataEngine's typed benchmark), lrv/ (LRV instructions, MME-style pairs), gavie/.
Image paths: COCO `file_name` and POPE `image` are relative to images/; image_captions.json and LLaVA
`image` are relative to the world folder; GeMKR `image` and region `image_id` are the bare image id.
Everything derives from the seed through per-stage random generators, so a seed gives byte-identical files.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import random
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

from mmrag.datasets import formats
from mmrag.datasets.pope_builder import STRATEGIES, build_pope
from mmrag.datasets.world import corpus, grounding, language
from mmrag.datasets.world.drawing import draw_scene
from mmrag.datasets.world.entities import (
    Entity, ObjectVocabulary, assign_partners, coco_categories, entity_counts_by_trait, make_entities,
    object_vocabulary,
)
from mmrag.datasets.world.vocabulary import CATEGORIES, GENERIC_OBJECTS
from mmrag.datasets.world.presets import WorldPreset, get_preset
from mmrag.datasets.world.scenes import Scene, anchor_entities, make_scene
from mmrag.common.errors import UserError

GENERATOR_VERSION = "3"  # 2: balanced presence turns in instruct_*, llava/yesno_balanced_*; 3: llava/objects_*,
#                          yesno_listed_*, pope_val/, the derived benchmarks (scienceqa/, dataengine/, lrv/, gavie/)
SPLITS = ("train", "test")
JPEG_QUALITY = 95
LAYOUT = ("world.json", "entities.json", "images", "annotations", "corpus.csv", "knowledge",
          "image_captions.json", "llava", "regions", "pope", "pope_val", "scienceqa", "dataengine", "lrv", "gavie")


class WorldExistsError(UserError, FileExistsError):
    """The output folder holds something other than the world being generated."""


@dataclass
class World:
    preset: WorldPreset
    seed: int
    entities: List[Entity]
    vocab: ObjectVocabulary
    scenes: List[Scene]
    corpus_rows: List[Tuple[str, str]]
    passages_by_entity: Dict[str, List[str]]
    hashes: Dict[str, str] = field(default_factory=dict)  # relative path -> sha256 of the bytes written


def stage_rngs(seed: int, stage: str) -> Tuple[random.Random, np.random.Generator]:
    """Independent generators per stage, so changing one stage leaves the others' draws unchanged."""
    return random.Random(f"{seed}:{stage}"), np.random.default_rng([seed, zlib.crc32(stage.encode())])


# ----------------------------------------------------------------------------- planning (no files)
def plan_world(preset: WorldPreset, seed: int) -> World:
    """Entities, scenes, captions, corpus and questions of a world, all in memory."""
    rng, np_rng = stage_rngs(seed, "entities")
    entities = make_entities(preset.entities_per_category, rng)
    vocab = object_vocabulary(entities, preset.zipf_exponent, rng)
    assign_partners(entities, vocab, np_rng)
    scenes = plan_scenes(preset, seed, entities, vocab)
    rng, _ = stage_rngs(seed, "corpus")
    n_distractors = int(round(preset.distractors_per_entity * len(entities)))
    rows, by_entity = corpus.build_corpus(entities, preset.passages_per_entity, n_distractors, rng)
    world = World(preset, seed, entities, vocab, scenes, rows, by_entity)
    plan_questions(world)
    return world


def plan_scenes(preset: WorldPreset, seed: int, entities: Sequence[Entity], vocab: ObjectVocabulary) -> List[Scene]:
    rng, np_rng = stage_rngs(seed, "scenes")
    n_test = int(round(preset.test_fraction * preset.n_images))
    n_train = preset.n_images - n_test
    anchors = anchor_entities(entities, n_train, n_test, np_rng)
    scenes = []
    for i, anchor in enumerate(anchors):
        scene = make_scene(i, SPLITS[0] if i < n_train else SPLITS[1], anchor, vocab, preset, rng, np_rng)
        scene.captions = language.captions(scene)
        scenes.append(scene)
    return scenes


def plan_questions(world: World) -> None:
    """Knowledge questions per scene, with the entity's passages that hold an answer as gold."""
    rng, _ = stage_rngs(world.seed, "questions")
    trait_counts = entity_counts_by_trait(world.entities)
    text_of = dict(world.corpus_rows)
    preset = world.preset
    for scene in world.scenes:
        drafts = language.make_questions(scene, preset.image_size, preset.questions_per_image,
                                         preset.min_question_ambiguity, trait_counts, rng)
        for j, draft in enumerate(drafts):
            gold = corpus.gold_passages(draft["output"], world.passages_by_entity[draft["entity_id"]], text_of)
            if not gold:
                raise AssertionError(f"no passage of {draft['entity_id']} states {draft['output']}")
            scene.questions.append({
                "input": f"{draft['question']} {scene.captions[0]}", "output": draft["output"],
                "image": scene.image_id, "question": draft["question"], "caption": scene.captions[0],
                "entity_id": draft["entity_id"], "gold_passage_ids": gold, "qtype": draft["qtype"],
                "question_id": f"{scene.image_id}_q{j}"})


# ----------------------------------------------------------------------------- records per format
def coco_image(scene: Scene, size: int) -> Dict[str, object]:
    return {"id": scene.index, "file_name": f"{scene.image_id}.jpg", "width": size, "height": size}


def coco_instances(world: World, split: str) -> Dict[str, object]:
    scenes = [s for s in world.scenes if s.split == split]
    size = world.preset.image_size
    ids = {e.name: e.coco_category_id for e in world.entities}
    ids.update({c["name"]: c["id"] for c in coco_categories(world.entities)})
    annotations = []
    for scene in scenes:
        for k, obj in enumerate(scene.objects):  # at most 5 objects: ids image*10+1 .. image*10+5
            x, y, w, h = obj.box
            annotations.append({"id": scene.index * 10 + k + 1, "image_id": scene.index,
                                "category_id": ids[obj.label], "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    return {"images": [coco_image(s, size) for s in scenes], "annotations": annotations,
            "categories": coco_categories(world.entities)}


def coco_captions(world: World, split: str) -> Dict[str, object]:
    scenes = [s for s in world.scenes if s.split == split]
    annotations = [{"id": s.index * 10 + k, "image_id": s.index, "caption": caption}
                   for s in scenes for k, caption in enumerate(s.captions)]
    return {"images": [coco_image(s, world.preset.image_size) for s in scenes], "annotations": annotations}


def _jitter(box: List[float], size: int, np_rng: np.random.Generator) -> List[float]:
    """A detector-like box: the true box moved and resized by ~6% of its size, kept in the image."""
    x, y, w, h = box
    dx, dy, dw, dh = np_rng.normal(0.0, 0.06, size=4)
    nw, nh = max(2.0, w * (1 + dw)), max(2.0, h * (1 + dh))
    nx = min(max(0.0, x + dx * w), size - nw)
    ny = min(max(0.0, y + dy * h), size - nh)
    return [round(float(v), 2) for v in (nx, ny, nw, nh)]


def noisy_detections(instances: Dict[str, object], world: World, split: str) -> List[Dict[str, object]]:
    """COCO detection results made from the true boxes: jitter, scores, misses and false positives."""
    _, np_rng = stage_rngs(world.seed, f"detections-{split}")
    preset, size = world.preset, world.preset.image_size
    category_ids = [c["id"] for c in instances["categories"]]
    by_image: Dict[int, List[Dict]] = {}
    for ann in instances["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    detections = []
    for image in instances["images"]:
        for ann in by_image.get(image["id"], []):
            if np_rng.random() < preset.detector_miss_rate:
                continue
            score = float(np.clip(np_rng.normal(0.85, 0.08), 0.3, 0.999))
            detections.append({"image_id": image["id"], "category_id": ann["category_id"],
                               "bbox": _jitter(ann["bbox"], size, np_rng), "score": round(score, 3)})
        for _ in range(int(np_rng.poisson(preset.detector_false_positive_rate))):
            w, h = (float(v) for v in np_rng.uniform(0.15, 0.4, size=2) * size)
            x, y = (float(v) for v in np_rng.uniform(0, 1, size=2) * (size - w, size - h))
            detections.append({"image_id": image["id"], "category_id": int(np_rng.choice(category_ids)),
                               "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                               "score": round(float(np_rng.uniform(0.05, 0.5)), 3)})
    return detections


def llava_conversations(world: World, split: str) -> List[Dict[str, object]]:
    rng, _ = stage_rngs(world.seed, f"llava-{split}")
    scenes = [s for s in world.scenes if s.split == split]
    # category words are in every scene (each has an entity), so half the questions can be 'yes'
    words = grounding.presence_words(scenes, GENERIC_OBJECTS + CATEGORIES, world.seed, split)
    return [record for s, word in zip(scenes, words)
            for record in language.llava_records(s, f"images/{s.image_id}.jpg", s.captions[1],
                                                 world.preset.image_size, rng, word)]


def grounding_files(world: World) -> Dict[str, List[Dict[str, object]]]:
    """llava file name -> records, per split (train / val held out of train / test): presence questions
    balanced per name, the listing of each image's objects, and the presence questions after that listing
    (grounding.py)."""
    rng, _ = stage_rngs(world.seed, "yesno-balanced")  # its own stream: no other file's draws move
    objects = {s.image_id: sorted({o.label for o in s.objects}) for s in world.scenes}
    left_to_right = {s.image_id: [o.label for o in sorted(s.objects, key=lambda o: (o.centre_x, o.label))]
                     for s in world.scenes}
    train, val = grounding.split_val_images([s.image_id for s in world.scenes if s.split == "train"], rng)
    images = {"train": train, "val": val, "test": [s.image_id for s in world.scenes if s.split == "test"]}
    path = lambda image: f"images/{image}.jpg"  # noqa: E731
    image_of = lambda p: Path(p).stem  # noqa: E731
    files: Dict[str, List[Dict[str, object]]] = {}
    for split in grounding.YESNO_SPLITS:
        yesno = grounding.llava_yesno_records(
            grounding.balanced_pairs({i: objects[i] for i in images[split]}, rng), path)
        files[f"yesno_balanced_{split}"] = yesno
        files[f"objects_{split}"] = grounding.llava_listing_records(images[split], left_to_right, path)
        files[f"yesno_listed_{split}"] = grounding.llava_listed_yesno_records(yesno, left_to_right, image_of)
    return files


def region_descriptions(world: World) -> List[Dict[str, object]]:
    return [{"image_id": s.image_id, "regions": language.region_records(s, s.index * 10 + 1)} for s in world.scenes]


# ----------------------------------------------------------------------------- writing
class _Sink:
    """Writes files under a root and remembers the sha256 of each."""

    def __init__(self, root: Path, hashes: Dict[str, str]) -> None:
        self.root, self.hashes = root, hashes

    def write(self, relative: str, data: bytes) -> None:
        formats.write_bytes(self.root / relative, data)
        self.hashes[relative] = hashlib.sha256(data).hexdigest()


def encode_scene(scene_and_size: Tuple[Scene, int]) -> bytes:
    """JPEG bytes of one scene (a top-level function so worker processes can run it)."""
    scene, size = scene_and_size
    buffer = io.BytesIO()
    draw_scene(scene, size).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def write_images(world: World, sink: _Sink, progress: bool, workers: int = 1) -> None:
    """Draw and save every image; with workers > 1 drawing runs in processes (same bytes, same order)."""
    jobs = [(scene, world.preset.image_size) for scene in world.scenes]
    bar = tqdm(total=len(jobs), desc="drawing images", unit="img", disable=not progress)
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))
            encoded = pool.imap(encode_scene, jobs, chunksize=64)
        else:
            encoded = map(encode_scene, jobs)
        for scene, data in zip(world.scenes, encoded):
            sink.write(f"images/{scene.image_id}.jpg", data)
            bar.update(1)
    bar.close()


def write_split_files(world: World, sink: _Sink, split: str) -> Dict[str, object]:
    """COCO, GeMKR and LLaVA files of one split; returns that split's instances (for POPE)."""
    instances = coco_instances(world, split)
    sink.write(f"annotations/instances_{split}.json", formats.json_bytes(instances))
    sink.write(f"annotations/captions_{split}.json", formats.json_bytes(coco_captions(world, split)))
    sink.write(f"annotations/detections_{split}.json", formats.json_bytes(noisy_detections(instances, world, split)))
    questions = [q for s in world.scenes if s.split == split for q in s.questions]
    sink.write(f"knowledge/{split}.json", formats.json_bytes(questions))
    sink.write(f"llava/instruct_{split}.json", formats.json_bytes(llava_conversations(world, split)))
    return instances


def world_counts(world: World) -> Dict[str, int]:
    counts = {"entities": len(world.entities), "images": len(world.scenes),
              "objects": sum(len(s.objects) for s in world.scenes), "passages": len(world.corpus_rows),
              "entity_passages": sum(len(v) for v in world.passages_by_entity.values()),
              "categories": len(world.vocab.names)}
    for split in SPLITS:
        counts[f"images_{split}"] = sum(s.split == split for s in world.scenes)
        counts[f"questions_{split}"] = sum(len(s.questions) for s in world.scenes if s.split == split)
    return counts


def write_world(world: World, out_dir: Path, progress: bool = True, workers: int = 1) -> Dict[str, object]:
    """Write every file of the layout; returns the world.json content."""
    sink = _Sink(out_dir, world.hashes)
    write_images(world, sink, progress, workers)
    sink.write("entities.json", formats.json_bytes([e.as_dict() for e in world.entities]))
    sink.write("corpus.csv", formats.corpus_csv_bytes(world.corpus_rows))
    sink.write("image_captions.json", formats.json_bytes(
        [{"image": f"images/{s.image_id}.jpg", "caption": s.captions[0]} for s in world.scenes]))
    sink.write("regions/region_descriptions.json", formats.json_bytes(region_descriptions(world)))
    test_instances = {split: write_split_files(world, sink, split) for split in SPLITS}["test"]
    counts = world_counts(world)
    for name, records in grounding_files(world).items():
        sink.write(f"llava/{name}.json", formats.json_bytes(records))
        counts[name] = len(records)
        if name == "yesno_balanced_val":  # val presence questions as POPE lines: settings are chosen on these
            for subset, rows in grounding.pope_rows(records).items():
                sink.write(f"pope_val/{subset}.jsonl", formats.jsonl_bytes(rows))
    for strategy in STRATEGIES:
        rows = build_pope(test_instances, strategy, world.preset.pope_per_image, seed=world.seed)
        sink.write(f"pope/{strategy}.jsonl", formats.jsonl_bytes(rows))
        counts[f"pope_{strategy}"] = len(rows)
    meta = {"generator_version": GENERATOR_VERSION, "preset": world.preset.name, "seed": world.seed,
            "preset_config": world.preset.as_dict(), "counts": counts,
            "files": dict(sorted(world.hashes.items()))}
    formats.write_bytes(out_dir / "world.json", formats.json_bytes(meta))
    return meta


# The benchmarks of the later systems, written from the world's saved files (each module reads what it
# needs from disk, so it also runs on a world generated before it existed): (folder, writer). Order
# matters: gavie reads lrv's items.
def derived_writers() -> List[Tuple[str, Callable[[Path, int], Dict[str, object]]]]:
    from mmrag.datasets.world.gavie import write_gavie
    from mmrag.datasets.world.lrv_instructions import write_lrv_instructions
    from mmrag.datasets.world.scienceqa import write_scienceqa
    from mmrag.datasets.world.typed_benchmark import write_typed_benchmark

    return [("scienceqa", write_scienceqa), ("dataengine", write_typed_benchmark),
            ("lrv", write_lrv_instructions), ("gavie", write_gavie)]


def write_derived(out_dir: Path, seed: int, meta: Dict[str, object], progress: bool = True) -> Dict[str, object]:
    """Run every derived writer; record their counts and the sha256 of their files in world.json."""
    derived: Dict[str, object] = {}
    for folder, writer in tqdm(derived_writers(), desc="benchmarks", disable=not progress):
        derived[folder] = writer(out_dir, seed)
        for path in sorted((out_dir / folder).rglob("*")):
            if path.is_file():
                meta["files"][str(path.relative_to(out_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    meta["files"] = dict(sorted(meta["files"].items()))
    meta["derived"] = json.loads(json.dumps(derived, default=str))
    formats.write_bytes(out_dir / "world.json", formats.json_bytes(meta))
    return meta


def prepare_output_dir(out_dir: Path, preset: str, seed: int, force: bool = False) -> None:
    """Refuse a non-empty folder holding anything but this same world unless `force`; clear old world files."""
    if out_dir.exists() and any(out_dir.iterdir()):
        meta_path = out_dir / "world.json"
        same = False
        if meta_path.is_file():
            meta = formats.read_world_meta(meta_path)
            same = (meta["preset"], meta["seed"], meta["generator_version"]) == (preset, seed, GENERATOR_VERSION)
        if not same and not force:
            raise WorldExistsError(f"{out_dir} is not empty and does not hold world preset={preset} seed={seed} "
                                   f"(generator {GENERATOR_VERSION}); pass --force to replace it")
        for name in LAYOUT:
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def generate_world(preset: Union[str, WorldPreset], seed: int, out_dir: Union[str, Path],
                   force: bool = False, progress: bool = True, workers: int = 1) -> Dict[str, object]:
    """Plan and write a world under `out_dir`; returns the content of its world.json.

    `workers` > 1 draws images in that many processes (worth it for `large`); files are identical.
    """
    preset = get_preset(preset) if isinstance(preset, str) else preset
    out_dir = Path(out_dir)
    prepare_output_dir(out_dir, preset.name, seed, force)
    meta = write_world(plan_world(preset, seed), out_dir, progress, workers)
    return write_derived(out_dir, seed, meta, progress)
