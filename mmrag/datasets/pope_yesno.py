"""Balanced POPE-style yes/no questions on a COCO-format split, written as LLaVA conversations.

Why: LLaVA-1.5-style recipes add balanced object-existence questions to the instruction data;
`make_split` makes them for any COCO-format split from `annotations/instances_<split>.json` with the POPE sampler
(`mmrag.datasets.pope_builder.build_pope`). Every image gets the questions of ONE strategy (random,
popular or adversarial, a seeded choice per image), `per_image` yes and as many no questions, so
the labels are exactly 50/50. The wording is the POPE task's at inference:

    human: "<image>\\nIs there a {object} in the image? Answer yes or no."   gpt: "Yes." / "No."

Output: <world>/llava/yesno_<split>.json (train for training; test only as a held-out check of the
trained model, never for training). The POPE question files (pope/*.jsonl) are not read or written.
These are 50/50 per image, not per name: a rare name is still mostly asked "no". The world generator
itself writes llava/yesno_balanced_{train,val,test}.json, balanced per name by complementary pairs
(mmrag.datasets.world.grounding); prefer those on the synthetic world.
CLI: `python data_process/make_pope_style_train.py` (mmrag.cli.make_pope_style_train).
"""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Dict, List, Sequence

from mmrag.common.errors import DataFormatError
from mmrag.common.tool_config import register_tool
from mmrag.datasets.formats import read_coco_instances, write_json
from mmrag.datasets.pope_builder import STRATEGIES, build_pope

ANSWER_SUFFIX = " Answer yes or no."   # eval_configs/pope_*.yaml: evaluation.prompt_suffix
ANSWERS = {"yes": "Yes.", "no": "No."}


class YesNoDataError(DataFormatError):
    """A bad input of the yes/no builder: names the file and what was expected."""


def mixed_pope_questions(instances: Dict, per_image: int, seed: int) -> List[Dict[str, object]]:
    """POPE rows {image, text, label, strategy}: each eligible image with the rows of one seeded strategy.

    `build_pope` decides eligibility from the image's objects alone, so every strategy covers the same
    images; per image we keep one strategy's `per_image` yes / `per_image` no questions, in its order.
    """
    by_strategy = {s: build_pope(instances, s, n_per_image=per_image, seed=seed) for s in STRATEGIES}
    grouped: Dict[str, Dict[str, List[Dict[str, object]]]] = {s: {} for s in STRATEGIES}
    for strategy, rows in by_strategy.items():
        for row in rows:
            grouped[strategy].setdefault(str(row["image"]), []).append(row)
    rng = random.Random(f"yesno-mix-{seed}")
    mixed: List[Dict[str, object]] = []
    for image in sorted(grouped[STRATEGIES[0]]):
        strategy = rng.choice(STRATEGIES)
        mixed += [{**row, "strategy": strategy} for row in grouped[strategy][image]]
    return mixed


def to_llava(rows: Sequence[Dict[str, object]], image_dir: str = "images") -> List[Dict[str, object]]:
    """POPE rows -> LLaVA conversation records with ids '<image stem>_yesno_<n>' (n counts per image)."""
    per_image: Counter = Counter()
    records = []
    for row in rows:
        stem = Path(str(row["image"])).stem
        records.append({
            "id": f"{stem}_yesno_{per_image[stem]}",
            "image": f"{image_dir}/{row['image']}",
            "conversations": [
                {"from": "human", "value": f"<image>\n{row['text']}{ANSWER_SUFFIX}"},
                {"from": "gpt", "value": ANSWERS[str(row["label"])]},
            ],
        })
        per_image[stem] += 1
    return records


def make_split(world: Path, split: str, per_image: int, seed: int) -> Dict[str, object]:
    """Build <world>/llava/yesno_<split>.json; returns counts for the log."""
    source = world / "annotations" / f"instances_{split}.json"
    if not source.is_file():
        raise YesNoDataError(f"{source}: COCO instances file of split '{split}' does not exist")
    rows = mixed_pope_questions(read_coco_instances(source), per_image, seed)
    if not rows:
        raise YesNoDataError(f"{source}: no image has {per_image} distinct annotated objects (lower --per-image)")
    target = world / "llava" / f"yesno_{split}.json"
    write_json(target, to_llava(rows))
    labels = Counter(str(r["label"]) for r in rows)
    return {"split": split, "file": str(target), "questions": len(rows), "images": len({r["image"] for r in rows}),
            "yes": labels["yes"], "no": labels["no"], "strategies": dict(Counter(str(r["strategy"]) for r in rows))}


MAKE_POPE_STYLE_TRAIN = register_tool("make_pope_style_train", {
    "world": "dataset/world_small",   # world folder (annotations/, llava/)
    "splits": ["train", "test"],      # splits to build
    "per_image": 2,                   # yes questions per image (as many no questions)
    "seed": 0,
})


def make_yes_no_files(cfg: Dict[str, object]) -> List[Dict[str, object]]:
    """Build the yes/no file of every configured split; returns their counts."""
    if int(cfg["per_image"]) < 1:
        raise YesNoDataError(f"make_pope_style_train: per_image must be >= 1, got {cfg['per_image']}")
    return [make_split(Path(str(cfg["world"])), split, int(cfg["per_image"]), int(cfg["seed"])) for split in cfg["splits"]]
