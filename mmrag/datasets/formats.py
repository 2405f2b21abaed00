"""Readers, writers and validation for the data formats the reference projects use.

Every reader checks the structure it depends on and raises `DataFormatError` with one line that names
the file, the place (CSV/JSON-lines: 1-based line number; JSON lists: 0-based item index) and what was
expected. The same readers serve the synthetic world and the real files (OKVQA-GS112K corpus, GeMKR
question JSON, COCO instances/captions/detections, LLaVA conversations, POPE, image-caption lists,
Visual Genome region descriptions). Writers produce canonical bytes (sorted keys, fixed separators,
no timestamps) so equal data gives byte-identical files.
"""
from __future__ import annotations

import csv
import io
import json
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union
from mmrag.common.errors import DataFormatError

PathLike = Union[str, Path]
IMAGE_PLACEHOLDER = "<image>"
LLAVA_ROLES = ("human", "gpt")
POPE_LABELS = ("yes", "no")


class Passage(NamedTuple):
    id: str
    text: str


@dataclass(frozen=True)
class MissingImage:
    record_id: str
    path: str


# ----------------------------------------------------------------------------- writers
def json_bytes(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, compact separators, UTF-8, one trailing newline."""
    return (json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


def jsonl_bytes(rows: Iterable[Dict[str, Any]]) -> bytes:
    """One canonical JSON object per line."""
    return b"".join(json_bytes(row) for row in rows)


def corpus_csv_bytes(passages: Iterable[Tuple[str, str]], id_column: str = "id") -> bytes:
    """The OKVQA-GS112K corpus layout: header `id,text` (or `kid,text`), one passage per row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([id_column, "text"])
    for pid, text in passages:
        writer.writerow([pid, text])
    return buffer.getvalue().encode("utf-8")


def write_bytes(path: PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_json(path: PathLike, obj: Any) -> None:
    write_bytes(path, json_bytes(obj))


def write_jsonl(path: PathLike, rows: Iterable[Dict[str, Any]]) -> None:
    write_bytes(path, jsonl_bytes(rows))


# ----------------------------------------------------------------------------- helpers
def _load_json(path: PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}: line {err.lineno} column {err.colno}: not valid JSON ({err.msg})") from err


def _expect(condition: bool, path: PathLike, where: str, expected: str) -> None:
    if not condition:
        raise DataFormatError(f"{path}: {where}: expected {expected}")


def _expect_list(data: Any, path: PathLike, what: str) -> List[Any]:
    _expect(isinstance(data, list), path, "top level", f"a JSON list of {what}, got {type(data).__name__}")
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field(record: Any, key: str, path: PathLike, where: str, check, expected: str) -> Any:
    """record[key] after checking it with `check`; a missing key or a bad value is a DataFormatError."""
    _expect(isinstance(record, dict), path, where, f"a JSON object, got {type(record).__name__}")
    _expect(key in record, path, where, f"key '{key}' ({expected})")
    _expect(check(record[key]), path, where, f"'{key}' to be {expected}, got {record[key]!r:.80}")
    return record[key]


def _non_empty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(isinstance(v, str) for v in value)


def _box(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(_is_number(v) for v in value) \
        and value[2] >= 0 and value[3] >= 0


# ----------------------------------------------------------------------------- corpus (OKVQA-GS112K)
def read_corpus_csv(path: PathLike) -> List[Passage]:
    """Passages of a corpus CSV with header `id,text` or `kid,text`; ids unique, texts non-empty."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file does not exist")
    passages: List[Passage] = []
    first_line_of: Dict[str, int] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        _expect(header in (["id", "text"], ["kid", "text"]), path, "line 1", f"header 'id,text' or 'kid,text', got {header}")
        for row in reader:
            line = reader.line_num
            _expect(len(row) == 2, path, f"line {line}", f"2 fields (id,text), got {len(row)}")
            pid, text = row
            _expect(pid.strip() != "", path, f"line {line}", "a non-empty passage id")
            _expect(text.strip() != "", path, f"line {line}", f"non-empty text for passage '{pid}'")
            _expect(pid not in first_line_of, path, f"line {line}",
                    f"a unique id; '{pid}' already appears on line {first_line_of.get(pid)}")
            first_line_of[pid] = line
            passages.append(Passage(pid, text))
    return passages


# ----------------------------------------------------------------------------- GeMKR questions
def read_knowledge_questions(path: PathLike) -> List[Dict[str, Any]]:
    """GeMKR question JSON: a list of {"input", "output" (answers list, or clue text), "image"}."""
    data = _expect_list(_load_json(path), path, "questions")
    for i, item in enumerate(data):
        where = f"item {i}"
        _field(item, "input", path, where, _non_empty_str, "a non-empty string")
        _field(item, "output", path, where, lambda v: _str_list(v) or _non_empty_str(v),
               "a non-empty list of answer strings or a clue string")
        _field(item, "image", path, where, _non_empty_str, "an image id string")
    return data


# ----------------------------------------------------------------------------- COCO
def _unique_ids(items: Sequence[Any], path: PathLike, section: str) -> Dict[int, Any]:
    by_id: Dict[int, Any] = {}
    for i, item in enumerate(items):
        key = _field(item, "id", path, f"{section}[{i}]", _is_int, "an integer")
        _expect(key not in by_id, path, f"{section}[{i}]", f"a unique id; {key} is repeated")
        by_id[key] = item
    return by_id


def _coco_sections(data: Any, path: PathLike, sections: Sequence[str]) -> None:
    _expect(isinstance(data, dict), path, "top level", "a JSON object with " + ", ".join(sections))
    for section in sections:
        _expect(isinstance(data.get(section), list), path, "top level", f"a list under '{section}'")


def _check_coco_images(data: Dict[str, Any], path: PathLike) -> Dict[int, Any]:
    images = _unique_ids(data["images"], path, "images")
    for i, image in enumerate(data["images"]):
        _field(image, "file_name", path, f"images[{i}]", _non_empty_str, "a file name")
        for key in ("width", "height"):
            _field(image, key, path, f"images[{i}]", lambda v: _is_int(v) and v > 0, "a positive integer")
    return images


def read_coco_instances(path: PathLike) -> Dict[str, Any]:
    """COCO instances JSON; checks ids are unique and every annotation's image and category exist."""
    data = _load_json(path)
    _coco_sections(data, path, ("images", "annotations", "categories"))
    images = _check_coco_images(data, path)
    categories = _unique_ids(data["categories"], path, "categories")
    for i, cat in enumerate(data["categories"]):
        _field(cat, "name", path, f"categories[{i}]", _non_empty_str, "a category name")
    _unique_ids(data["annotations"], path, "annotations")
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        _field(ann, "image_id", path, where, lambda v: v in images, "the id of an image in 'images'")
        _field(ann, "category_id", path, where, lambda v: v in categories, "the id of a category in 'categories'")
        _field(ann, "bbox", path, where, _box, "[x, y, width, height] with width, height >= 0")
    return data


def read_coco_captions(path: PathLike) -> Dict[str, Any]:
    """COCO captions JSON: images plus annotations {id, image_id, caption}."""
    data = _load_json(path)
    _coco_sections(data, path, ("images", "annotations"))
    images = _check_coco_images(data, path)
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        _field(ann, "image_id", path, where, lambda v: v in images, "the id of an image in 'images'")
        _field(ann, "caption", path, where, _non_empty_str, "a non-empty caption")
    return data


def read_coco_detections(path: PathLike, instances: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """COCO detection results [{image_id, category_id, bbox, score}]; ids checked against `instances` if given."""
    data = _expect_list(_load_json(path), path, "detections")
    image_ids = {im["id"] for im in instances["images"]} if instances else None
    category_ids = {c["id"] for c in instances["categories"]} if instances else None
    for i, det in enumerate(data):
        where = f"item {i}"
        image_id = _field(det, "image_id", path, where, _is_int, "an integer image id")
        category_id = _field(det, "category_id", path, where, _is_int, "an integer category id")
        _field(det, "bbox", path, where, _box, "[x, y, width, height] with width, height >= 0")
        _field(det, "score", path, where, lambda v: _is_number(v) and 0.0 <= v <= 1.0, "a number in [0, 1]")
        if image_ids is not None:
            _expect(image_id in image_ids, path, where, f"an image id of the instances file, got {image_id}")
            _expect(category_id in category_ids, path, where, f"a category id of the instances file, got {category_id}")
    return data


# ----------------------------------------------------------------------------- LLaVA
def llava_images(item: Dict[str, Any]) -> List[str]:
    """The image paths of one LLaVA record: [] without image, [path] for one, the list for several."""
    image = item.get("image")
    if image is None:
        return []
    return [image] if isinstance(image, str) else list(image)


def _check_llava_item(item: Any, path: PathLike, where: str) -> None:
    turns = _field(item, "conversations", path, where, lambda v: isinstance(v, list) and len(v) > 0,
                   "a non-empty list of turns")
    if "image" in item:
        _field(item, "image", path, where, lambda v: _non_empty_str(v) or _str_list(v),
               "an image path or a non-empty list of image paths")
    placeholders = 0
    for t, turn in enumerate(turns):
        turn_where = f"{where} turn {t}"
        role = _field(turn, "from", path, turn_where, lambda v: v in LLAVA_ROLES, "'human' or 'gpt'")
        _expect(role == LLAVA_ROLES[t % 2], path, turn_where, f"turns alternating human/gpt starting with human, got '{role}'")
        value = _field(turn, "value", path, turn_where, lambda v: isinstance(v, str), "a string")
        placeholders += value.count(IMAGE_PLACEHOLDER)
    n_images = len(llava_images(item))
    _expect(placeholders == n_images, path, where,
            f"as many '{IMAGE_PLACEHOLDER}' placeholders as images ({n_images}), got {placeholders}")


def read_llava_conversations(path: PathLike) -> List[Dict[str, Any]]:
    """LLaVA conversation JSON: [{"id", "image"? (path or list), "conversations": [...]}]."""
    data = _expect_list(_load_json(path), path, "conversation records")
    for i, item in enumerate(data):
        where = f"item {i}"
        _field(item, "id", path, where, lambda v: _non_empty_str(v) or _is_int(v), "a string or integer id")
        _check_llava_item(item, path, f"{where} (id={item['id']})")
    return data


# ----------------------------------------------------------------------------- POPE
def read_pope_jsonl(path: PathLike) -> List[Dict[str, Any]]:
    """POPE JSON lines {question_id, image, text, label in yes/no}; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file does not exist")
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}: {where}: not valid JSON ({err.msg})") from err
        _field(row, "question_id", path, where, lambda v: _is_int(v) or _non_empty_str(v), "an id")
        _field(row, "image", path, where, _non_empty_str, "an image file name")
        _field(row, "text", path, where, _non_empty_str, "the question text")
        _field(row, "label", path, where, lambda v: v in POPE_LABELS, "'yes' or 'no'")
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- captions, regions, world
def read_image_captions(path: PathLike) -> List[Dict[str, str]]:
    """An image-caption database: [{"image": path, "caption": text}]."""
    data = _expect_list(_load_json(path), path, "{image, caption} records")
    for i, item in enumerate(data):
        _field(item, "image", path, f"item {i}", _non_empty_str, "an image path")
        _field(item, "caption", path, f"item {i}", _non_empty_str, "a non-empty caption")
    return data


def region_image_id(item: Dict[str, Any]) -> Any:
    """Visual Genome files name the image `id`; ours `image_id`. Either is accepted."""
    return item["image_id"] if "image_id" in item else item.get("id")


def read_region_descriptions(path: PathLike) -> List[Dict[str, Any]]:
    """Visual-Genome-style region descriptions: [{"image_id" or "id", "regions": [{region_id, phrase, x, y, width, height}]}]."""
    data = _expect_list(_load_json(path), path, "per-image region lists")
    for i, item in enumerate(data):
        where = f"item {i}"
        _expect(isinstance(item, dict) and region_image_id(item) is not None, path, where, "an 'image_id' (or 'id')")
        regions = _field(item, "regions", path, where, lambda v: isinstance(v, list), "a list of regions")
        for r, region in enumerate(regions):
            rwhere = f"{where} region {r}"
            _field(region, "region_id", path, rwhere, lambda v: _is_int(v) or _non_empty_str(v), "an id")
            _field(region, "phrase", path, rwhere, _non_empty_str, "a non-empty phrase")
            for key in ("x", "y"):
                _field(region, key, path, rwhere, _is_number, "a number")
            for key in ("width", "height"):
                _field(region, key, path, rwhere, lambda v: _is_number(v) and v > 0, "a positive number")
    return data


def read_entities(path: PathLike) -> List[Dict[str, Any]]:
    """The world's entities.json: [{"id", "name", "category", "signature", "facts"}]."""
    data = _expect_list(_load_json(path), path, "entities")
    for i, item in enumerate(data):
        for key in ("id", "name", "category"):
            _field(item, key, path, f"item {i}", _non_empty_str, "a non-empty string")
        _field(item, "signature", path, f"item {i}", lambda v: isinstance(v, dict), "an object")
        _field(item, "facts", path, f"item {i}", lambda v: isinstance(v, dict) and all(
            isinstance(x, str) for x in v.values()), "an object of attribute -> value strings")
    return data


def read_world_meta(path: PathLike) -> Dict[str, Any]:
    """world.json: preset, seed, counts, generator version and the sha256 of each file."""
    data = _load_json(path)
    for key in ("preset", "seed", "counts", "generator_version", "files"):
        _expect(isinstance(data, dict) and key in data, path, "top level", f"key '{key}'")
    return data


# ----------------------------------------------------------------------------- images on disk
def image_references(kind: str, records: Any, image_root: PathLike, extension: str = ".jpg") -> Iterator[Tuple[str, Path]]:
    """(record id, image path) for each image a dataset refers to.

    kind: 'coco' (instances/captions dict; file_name under image_root), 'llava', 'pope', 'image_captions'
    (paths relative to image_root), 'knowledge' (GeMKR image ids: image_root/<id><extension>),
    'regions' (image ids: image_root/<id><extension>).
    """
    root = Path(image_root)
    if kind == "coco":
        yield from ((str(im["id"]), root / im["file_name"]) for im in records["images"])
    elif kind == "llava":
        for item in records:
            yield from ((str(item["id"]), root / image) for image in llava_images(item))
    elif kind == "pope":
        yield from ((str(row["question_id"]), root / row["image"]) for row in records)
    elif kind == "image_captions":
        yield from ((str(i), root / item["image"]) for i, item in enumerate(records))
    elif kind == "knowledge":
        yield from ((str(item.get("question_id", i)), root / f"{item['image']}{extension}") for i, item in enumerate(records))
    elif kind == "regions":
        yield from ((str(region_image_id(item)), root / f"{region_image_id(item)}{extension}") for item in records)
    else:
        raise ValueError(f"unknown dataset kind '{kind}'; known: coco, llava, pope, image_captions, knowledge, regions")


def find_missing_images(kind: str, records: Any, image_root: PathLike, extension: str = ".jpg") -> List[MissingImage]:
    """Every referenced image that is not a file, with the record id and the path that was looked for."""
    checked: Dict[Path, bool] = {}
    missing = []
    for record_id, image_path in image_references(kind, records, image_root, extension):
        if image_path not in checked:
            checked[image_path] = image_path.is_file()
        if not checked[image_path]:
            missing.append(MissingImage(record_id, str(image_path)))
    return missing


def assert_images_exist(kind: str, records: Any, image_root: PathLike, source: PathLike = "", extension: str = ".jpg") -> None:
    """Raise DataFormatError naming the first missing images (id and path) of a dataset, if any."""
    missing = find_missing_images(kind, records, image_root, extension)
    if missing:
        shown = "; ".join(f"id={m.record_id} path={m.path}" for m in missing[:5])
        raise DataFormatError(f"{source or kind}: {len(missing)} referenced image(s) missing: {shown}")
