"""LRV-Instruction, Visual Genome region descriptions and MME: readers, and LRV's dense-caption layout.

- LRV's instruction files: a JSON list of {image_id, question, answer, task} (the training set and the
  world's `lrv/instructions_{split}.json`); the released evaluation set has no answer and may call the
  question `instruction`. A top-level {"annotations": [...]} or {"data": [...]} wrapper, and JSON lines,
  are accepted. Image ids are read as strings (Visual Genome's are numbers).
- Visual Genome `region_descriptions.json`: [{"id" or "image_id", "regions": [{region_id, phrase, x, y,
  width, height, ...}]}] (validated by `formats.read_region_descriptions`). `region_box_problems` lists
  each region whose box leaves its image, one line naming the image and region.
- LRV's dense-caption layout, what the generator and the judge are shown:
  "<phrase> X: <x> Y: <y> Width: <width> Height: <height>". The fields go in that order and the
  height field holds the height (the reference code writes the width there).
- MME's released layout: one folder per subtask; either FLAT (`<stem>.jpg|png` next to `<stem>.txt`)
  or SPLIT (`images/<stem>.*` and `questions_answers_YN/<stem>.txt`); each txt line is
  "question<TAB>Yes|No", two lines (one Yes, one No) per image.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from mmrag.common.errors import DataFormatError
from mmrag.datasets import formats

PathLike = Union[str, Path]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
MME_ANSWERS = {"yes": "yes", "no": "no"}
_REGION_LINE = re.compile(r"^(?P<phrase>.*?)\s+X:\s*(?P<x>-?[\d.]+)\s+Y:\s*(?P<y>-?[\d.]+)\s+"
                          r"Width:\s*(?P<width>[\d.]+)\s+Height:\s*(?P<height>[\d.]+)\s*$")


# ----------------------------------------------------------------------------- LRV instruction files
def _records(path: Path) -> List[Any]:
    text = path.read_text(encoding="utf-8") if path.is_file() else None
    if text is None:
        raise DataFormatError(f"{path}: file does not exist")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    data.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataFormatError(f"{path}: line {n}: neither a JSON document nor JSON lines ({err.msg})") from err
    if isinstance(data, dict):
        for key in ("annotations", "data"):
            if isinstance(data.get(key), list):
                return data[key]
        raise DataFormatError(f"{path}: top level: expected a list of instructions or an object with "
                              f"'annotations' or 'data', got keys {sorted(data)[:5]}")
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: top level: expected a list of instructions, got {type(data).__name__}")
    return data


def read_lrv_instructions(path: PathLike, require_answer: bool = True) -> List[Dict[str, str]]:
    """[{image_id (str), question, answer ('' when absent and not required), task ('' when absent)}]."""
    path = Path(path)
    out = []
    for i, item in enumerate(_records(path)):
        where = f"item {i}"
        if not isinstance(item, dict):
            raise DataFormatError(f"{path}: {where}: expected a JSON object, got {type(item).__name__}")
        image_id = item.get("image_id")
        question = item.get("question", item.get("instruction"))
        answer = item.get("answer", item.get("answer_gt"))
        if image_id is None or (isinstance(image_id, str) and not image_id.strip()):
            raise DataFormatError(f"{path}: {where}: expected key 'image_id'")
        if not isinstance(question, str) or not question.strip():
            raise DataFormatError(f"{path}: {where} (image {image_id}): expected a non-empty 'question' (or 'instruction')")
        if require_answer and (not isinstance(answer, str) or not answer.strip()):
            raise DataFormatError(f"{path}: {where} (image {image_id}): expected a non-empty 'answer'")
        out.append({"image_id": str(image_id), "question": question.strip(), "answer": (answer or "").strip(),
                    "task": str(item.get("task", ""))})
    return out


def lrv_to_llava(records: Iterable[Mapping[str, str]], image_path: Callable[[str], str],
                 id_prefix: str = "lrv") -> List[Dict[str, Any]]:
    """LLaVA single-turn conversations from LRV records; `image_path(image_id)` names the image file."""
    return [{"id": f"{id_prefix}_{i}", "image": image_path(r["image_id"]), "task": r.get("task", ""),
             "conversations": [{"from": "human", "value": "<image>\n" + r["question"]},
                               {"from": "gpt", "value": r["answer"]}]}
            for i, r in enumerate(records)]


# ----------------------------------------------------------------------------- region descriptions
def read_vg_region_descriptions(path: PathLike) -> Dict[str, List[Dict[str, Any]]]:
    """image id (str) -> its regions, from a Visual Genome (or the world's) region_descriptions.json."""
    return {str(formats.region_image_id(item)): list(item["regions"])
            for item in formats.read_region_descriptions(path)}


def region_box_problems(regions_by_image: Mapping[str, Sequence[Mapping[str, Any]]],
                        sizes: Mapping[str, Tuple[float, float]]) -> List[str]:
    """One line per region whose box is not inside its image (sizes: image id -> (width, height)),
    and per image whose size is unknown."""
    problems = []
    for image_id, regions in regions_by_image.items():
        if image_id not in sizes:
            problems.append(f"image {image_id}: size unknown, its {len(regions)} regions not checked")
            continue
        width, height = sizes[image_id]
        for r in regions:
            x, y, w, h = (r[k] for k in ("x", "y", "width", "height"))
            if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
                problems.append(f"image {image_id} region {r.get('region_id')}: box x={x} y={y} width={w} "
                                f"height={h} is not inside the {width}x{height} image")
    return problems


def _number(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else f"{float(value):g}"


def region_line(region: Mapping[str, Any]) -> str:
    """'a red tool X: 15 Y: 65 Width: 20 Height: 27' (LRV's dense-caption layout, fields in this order)."""
    return (f"{region['phrase']} X: {_number(region['x'])} Y: {_number(region['y'])} "
            f"Width: {_number(region['width'])} Height: {_number(region['height'])}")


def parse_region_line(line: str) -> Dict[str, Any]:
    """The inverse of `region_line`: {phrase, x, y, width, height}."""
    match = _REGION_LINE.match(line.strip())
    if match is None:
        raise DataFormatError(f"not a dense-caption line '<phrase> X: Y: Width: Height:': {line!r:.100}")
    out: Dict[str, Any] = {"phrase": match["phrase"]}
    for key in ("x", "y", "width", "height"):
        value = float(match[key])
        out[key] = int(value) if value.is_integer() else value
    return out


# ----------------------------------------------------------------------------- MME
def _mme_subtask_files(folder: Path) -> Tuple[List[Path], Path]:
    """(annotation txt files, image folder) of one subtask folder, FLAT or SPLIT."""
    if (folder / "questions_answers_YN").is_dir() and (folder / "images").is_dir():
        return sorted((folder / "questions_answers_YN").glob("*.txt")), folder / "images"
    return sorted(folder.glob("*.txt")), folder


def _mme_image(image_folder: Path, stem: str, txt: Path) -> Path:
    for ext in IMAGE_EXTENSIONS:
        if (image_folder / f"{stem}{ext}").is_file():
            return image_folder / f"{stem}{ext}"
    raise DataFormatError(f"{txt}: no image {stem}.jpg/.png in {image_folder}")


def read_mme(root: PathLike, subtasks: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    """Items {question_id, image (relative to root), question, answer (yes/no), subtask, pair} of every
    subtask folder under `root` (or of `subtasks`); `pair` names the image the questions share."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: not a folder (expected MME's subtask folders)")
    names = list(subtasks) if subtasks else sorted(p.name for p in root.iterdir() if p.is_dir())
    items: List[Dict[str, Any]] = []
    for subtask in names:
        folder = root / subtask
        if not folder.is_dir():
            raise DataFormatError(f"{root}: no subtask folder '{subtask}'")
        txts, image_folder = _mme_subtask_files(folder)
        if not txts:
            raise DataFormatError(f"{folder}: no question files (<image>.txt)")
        for txt in txts:
            image = _mme_image(image_folder, txt.stem, txt).relative_to(root).as_posix()
            lines = [l for l in txt.read_text(encoding="utf-8").splitlines() if l.strip()]
            for n, line in enumerate(lines, start=1):
                parts = line.rstrip("\r").split("\t")
                label = MME_ANSWERS.get(parts[-1].strip().lower()) if len(parts) >= 2 else None
                if label is None:
                    raise DataFormatError(f"{txt}: line {n}: expected 'question<TAB>Yes|No', got {line!r:.100}")
                items.append({"question_id": f"{subtask}/{txt.stem}/{n - 1}", "image": image,
                              "question": "\t".join(parts[:-1]).strip(), "answer": label, "subtask": subtask,
                              "pair": f"{subtask}/{txt.stem}"})
    return items
