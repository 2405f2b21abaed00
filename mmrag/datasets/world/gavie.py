"""The world's GAVIE evaluation set: LRV instructions with what a judge needs to score an answer.

Reads the LRV instructions of the world (`<world>/lrv/items_{val,test}.jsonl`, written by
`mmrag.datasets.world.lrv_instructions.write_lrv_instructions`, which must run first), the world's region
descriptions, instances and entities, and writes under `<world>/gavie/`:

    vocabulary.json        the world's closed vocabulary (object words, entity names, colours, patterns,
                           shapes, part words, number words, fact values): what the oracle judge reads
    items_{val,test}.jsonl one line per instruction (vqa_eval's vqa_jsonl reader): question_id, image,
                           image_id, question, answer (the reference), task, polarity, and
                           annotations  the image's dense captions in LRV's layout, one per line
                                        ("<phrase> X: <x> Y: <y> Width: <w> Height: <h>"), then one "Fact:"
                                        line per entity shown (its name and facts): what an LLM judge sees
                           scene        the image's objects (id, label, word, box, colour, pattern, shape, parts,
                                        facts): what the oracle judge checks claims against
                           vocabulary   the path of vocabulary.json as `world_dir` was given
                                        (the `gavie` scorer loads it when it is built without one)

An annotation box outside its image is an error naming the file and annotation. Deterministic.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from mmrag.common.errors import DataFormatError, MissingPathError
from mmrag.common.jsonl import read_jsonl
from mmrag.datasets import formats
from mmrag.datasets.lrv_formats import read_vg_region_descriptions, region_box_problems, region_line
from mmrag.datasets.world.language import PART_WORDS, detailed_phrase
from mmrag.datasets.world.lrv_instructions import fact_claim, load_scene_graphs
from mmrag.datasets.world.vocabulary import COLOURS, FACT_VALUES, GENERIC_OBJECTS, NUMBER_WORDS, PATTERNS, SHAPES

GAVIE_SPLITS = ("val", "test")
ITEM_KEYS = ("question_id", "image", "image_id", "question", "answer", "task", "polarity", "form")


def world_vocabulary(entities) -> Dict[str, Any]:
    """The closed vocabulary of the world, as plain lists (see mmrag.metrics.gavie_oracle)."""
    fact_values: Dict[str, List[str]] = {}
    for (_, attribute), values in FACT_VALUES.items():
        fact_values.setdefault(attribute, [])
        fact_values[attribute] += [v for v in values if v not in fact_values[attribute]]
    return {"colours": list(COLOURS), "patterns": list(PATTERNS), "shapes": list(SHAPES),
            "generic": list(GENERIC_OBJECTS), "numbers": list(NUMBER_WORDS),
            "categories": {c: list(words) for c, words in PART_WORDS.items()},
            "names": {e.name: e.category for e in entities}, "fact_values": fact_values}


def scene_record(graph) -> Dict[str, Any]:
    """An image's objects as plain dicts (the oracle's scene graph)."""
    objects = []
    for obj, ann_id in zip(graph.scene.objects, graph.ann_ids):
        record = {"id": ann_id, "label": obj.label, "word": obj.word, "box": list(obj.box)}
        if obj.entity is not None:
            sig = obj.entity.signature
            record.update(colour=sig.colour, pattern=sig.pattern, shape=sig.shape, parts=sig.parts,
                          facts=dict(obj.entity.facts))
        objects.append(record)
    return {"width": graph.size, "height": graph.size, "objects": objects}


def annotation_text(graph, regions) -> str:
    """The image's dense captions in LRV's layout, then one line of facts per entity shown."""
    lines = [region_line(r) for r in regions]
    for obj in graph.scene.objects:
        if obj.entity is not None:
            x, y, w, h = obj.box
            facts = ", ".join(fact_claim(a, v) for a, v in sorted(obj.entity.facts.items()))
            lines.append(f"Fact: the {detailed_phrase(obj).removeprefix('a ').removeprefix('an ')} at X: {x} Y: {y} "
                         f"is a {obj.entity.name}; it {facts}.")
    return "\n".join(lines)


def write_gavie(world_dir: Path, seed: int) -> Dict[str, int]:
    """Write <world_dir>/gavie/ (see the module doc); returns counts. Needs <world_dir>/lrv/ first."""
    world_dir = Path(world_dir)
    out = world_dir / "gavie"
    graphs, entities = load_scene_graphs(world_dir, seed)
    by_image = {g.image_id: g for g in graphs}
    regions_path = world_dir / "regions" / "region_descriptions.json"
    regions = read_vg_region_descriptions(regions_path)
    problems = region_box_problems({k: v for k, v in regions.items() if k in by_image},
                                   {k: (g.size, g.size) for k, g in by_image.items()})
    if problems:
        raise DataFormatError(f"{regions_path}: {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                                                   if len(problems) > 1 else ""))
    vocabulary_path = out / "vocabulary.json"
    formats.write_json(vocabulary_path, world_vocabulary(entities))
    counts: Dict[str, int] = {}
    for split in GAVIE_SPLITS:
        source = world_dir / "lrv" / f"items_{split}.jsonl"
        if not source.is_file():
            raise MissingPathError(f"{source} does not exist: write the LRV instructions first "
                                   "(mmrag.datasets.world.lrv_instructions.write_lrv_instructions)")
        rows = []
        for item in read_jsonl(source):
            graph = by_image[item["image_id"]]
            rows.append({**{k: item[k] for k in ITEM_KEYS if k in item},
                         "annotations": annotation_text(graph, regions.get(item["image_id"], [])),
                         "scene": scene_record(graph), "vocabulary": str(vocabulary_path)})
        formats.write_jsonl(out / f"items_{split}.jsonl", rows)
        counts[f"items_{split}"] = len(rows)
        counts[f"images_{split}"] = len({r["image_id"] for r in rows})
    formats.write_json(out / "counts.json", {"seed": seed, "counts": counts})
    return counts
