"""GeMKR knowledge questions (OKVQA-GS112K format) as training samples whose targets are clues.

A question record is {"input": question + caption, "output": [answers], "image": image id}. The
world adds "gold_passage_ids"; with those, clues are sampled from the gold passages (one training
sample per clue). Without them (GeMKR's own train.json), a string "output" is the clue text.

Val split (`val_images`, a JSON file written by data_process/make_knowledge_val.py): the world has
only train and test questions, so settings chosen without the test questions need a split carved
from training. With `val_images` set, split 'val' is the training file's questions on those images
and split 'train' the others (no image in both); every reader (the builder, the evaluation, the
dense baseline's training) takes its questions from `read_split_questions`.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Dict, List

from mmrag.common.errors import DataFormatError
from mmrag.common.paths import require_path
from mmrag.common.registry import DATASETS
from mmrag.datasets.builders import Builder, split_path
from mmrag.datasets.clue_sampler import (ClueSamplerConfig, rarity_scores, sample_clues, word_start_table,
                                         word_starts)
from mmrag.datasets.multimodal_dataset import ConversationDataset, drop_missing_images
from mmrag.datasets.world.grounding import VAL_FRACTION, split_val_images

IMAGE_SLOT = "\n\n### Image:\n<image>"


def knowledge_prompt(question_input: str) -> List[Dict[str, str]]:
    """The human turn of the knowledge-completion template: the question, then the image."""
    return [{"from": "human", "value": question_input + IMAGE_SLOT}]


def image_path(image_root: Path, image_id: str, ext: str) -> str:
    return str(image_root / (image_id if Path(image_id).suffix else image_id + ext))


def knowledge_val_images(questions: List[Dict[str, Any]], seed: int = 0,
                         fraction: float = VAL_FRACTION) -> List[str]:
    """Sorted image ids of a seeded `fraction` of the questions' images: the val split, held out by image."""
    images = sorted({q["image"] for q in questions})
    return split_val_images(images, random.Random(f"{seed}:gemkr-knowledge-val"), fraction)[1]


def write_val_images(questions_path: Path, out: Path, seed: int = 0, fraction: float = VAL_FRACTION) -> Dict[str, Any]:
    """Write the val image list of a training questions file (with its provenance) to `out`."""
    from mmrag.datasets.formats import read_knowledge_questions

    questions = read_knowledge_questions(questions_path)
    images = knowledge_val_images(questions, seed, fraction)
    held = set(images)
    record = {"source": str(questions_path), "seed": seed, "fraction": fraction, "images": images,
              "val_questions": sum(q["image"] in held for q in questions),
              "train_questions": sum(q["image"] not in held for q in questions),
              "train_images": len({q["image"] for q in questions}) - len(images)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    return {k: v for k, v in record.items() if k != "images"}


def split_question_file(cfg, split: str) -> Path:
    """The file `split`'s questions are read from: its own, or the training file for a 'val' carved by
    `val_images`."""
    return split_path(cfg, "train" if split == "val" and cfg.get("val_images") else split)


def read_split_questions(cfg, split: str) -> List[Dict[str, Any]]:
    """The questions of `split` (`cfg`: a gemkr_knowledge datasets entry): the split's own file, or,
    with `val_images` set, 'val' / 'train' carved by image from the training file."""
    from mmrag.datasets.formats import read_knowledge_questions

    questions = read_knowledge_questions(split_question_file(cfg, split))
    val_file = cfg.get("val_images")
    if not val_file or split not in ("train", "val"):
        return questions
    held = set(json.loads(require_path("datasets.<name>.val_images", val_file, "val image list "
                                       "(data_process/make_knowledge_val.py)").read_text())["images"])
    return [q for q in questions if (q["image"] in held) == (split == "val")]


def load_corpus_index(cfg, tokenizer):
    from mmrag.retrieval.sharded_index import load_index

    path = require_path("datasets.<name>.index_path", cfg.index_path, "corpus index (data_process/build_index.py)")
    return load_index(path, tokenizer=tokenizer, verify_hash=cfg.verify_index)


def clue_records(questions, index, tokenizer, clue_cfg: ClueSamplerConfig, image_root: Path, ext: str,
                 source: str = "questions"):
    """One record per (question, clue): the prompt, the image, and the clue token ids as target.
    `source` (the questions file) names where a bad question came from."""
    row_of = {index.passage_id(r): r for r in range(index.n_passages)}
    starts = word_start_table(tokenizer)
    rarity = {}  # passage row -> rarity per word start; many questions share a gold passage
    records = []
    for q in questions:
        qid = str(q.get("question_id", q["image"] + q["input"][:40]))
        question_ids = tokenizer(q["input"], add_special_tokens=False)["input_ids"]
        answers = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in q["output"]]
        if q.get("gold_passage_ids"):
            clues = []
            for pid in q["gold_passage_ids"]:
                if str(pid) not in row_of:
                    raise DataFormatError(f"{source}: question {qid}: gold passage id {pid!r} is not in the corpus "
                                          f"index ({index.n_passages} passages); build the index from the same corpus")
                row = row_of[str(pid)]
                tokens = index.passage_tokens(row)
                if row not in rarity:
                    rarity[row] = rarity_scores(index, tokens, word_starts(tokens, starts), clue_cfg)
                clues += sample_clues(index, tokens, question_ids, f"{qid}:{pid}", starts, clue_cfg, rarity[row],
                                      answers)
            clues = clues[: clue_cfg.num_clues]
        elif isinstance(q["output"], str):
            clues = [tokenizer(q["output"], add_special_tokens=False)["input_ids"]]
        else:
            raise DataFormatError(f"{source}: question {qid}: needs 'gold_passage_ids' or a clue string as 'output' "
                                  "to train on")
        for j, clue in enumerate(clues):
            records.append({"id": f"{qid}#{j}", "images": [image_path(image_root, q["image"], ext)],
                            "conversations": knowledge_prompt(q["input"]) + [{"from": "gpt", "value": ""}],
                            "target_ids": clue})
    return records


@DATASETS.register("gemkr_knowledge")
class KnowledgeCluesBuilder(Builder):
    DEFAULTS: Dict[str, Any] = {
        "builder": "gemkr_knowledge",
        "image_ext": ".jpg",
        "index_path": None,
        "verify_index": True,
        "region_store": None,
        "val_images": None,   # JSON from data_process/make_knowledge_val.py: split 'val' carved from 'train' by image
        "clues": {"num_clues": 3, "clue_len": 8, "rarity_ngram": 3, "answer_weight": 1.0, "overlap_weight": 1.0,
                  "rarity_weight": 1.0, "temperature": 0.25, "seed": 0},
    }

    @classmethod
    def build(cls, cfg, processor, split: str, name: str) -> ConversationDataset:
        path = split_question_file(cfg, split)
        image_root = require_path(f"datasets.{name}.image_root", cfg.image_root, "image folder")
        questions = read_split_questions(cfg, split)
        if cfg.max_samples:
            questions = questions[: cfg.max_samples]
        index = load_corpus_index(cfg, processor.tokenizer)
        records = clue_records(questions, index, processor.tokenizer, ClueSamplerConfig(**cfg.clues), image_root,
                               cfg.image_ext, source=str(path))
        records = drop_missing_images(records, cfg.missing_images, str(path))
        return ConversationDataset(records, processor.image_processor, name, region_store(cfg, name))


def region_store(cfg, name: str):
    if not cfg.region_store:
        return None
    from mmrag.datasets.region_store import RegionFeatureStore

    return RegionFeatureStore(require_path(f"datasets.{name}.region_store", cfg.region_store, "region feature store"))
