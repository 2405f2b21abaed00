"""The DataEngine paper's benchmarks in their official file layouts, the released DataEngine data,
and the submission files of SEED-Bench and MMBench.

Readers turn each benchmark into evaluation items, the rows of vqa_eval's `vqa_jsonl` format
({question_id, image, question, answer | answers, options?, ...}, image relative to an image root),
scored by the scorers of `mmrag.metrics.vqa_official`:

| benchmark | official files | item keys beyond the common ones | scorer |
| --- | --- | --- | --- |
| okvqa | questions JSON {"questions": [...]}, annotations JSON {"annotations": [...]} (VQA layout) | answers (10), question_type, answer_type | vqa_official |
| vizwiz | val JSON: a list of {image, question, answers: [{answer}], answer_type} | answers | vizwiz |
| vsr | JSON lines {image, caption, label (1/0), relation} | answer 'true'/'false' | vsr |
| seed_bench | SEED-Bench.json {"question_type": {name: id}, "questions": [...]} (image questions) | options, question_type | mc_seed |
| mmbench | TSV: index, question, hint, A..D, answer, category, image (base64), ... | options, index, category | mmbench_circular / mc_mmbench |
| circular_mc | any vqa_jsonl multiple-choice file (e.g. the world's typed benchmark) | its rotated copies, index | mmbench_circular |

`mmrag-convert-benchmark` writes <out_dir>/questions.jsonl (and <out_dir>/images/ for MMBench, whose
images travel inside the TSV); an eval config points `evaluation.question_file` there with
`format: vqa_jsonl` (eval_configs/dataengine_*.yaml). `mmrag-benchmark-submission` turns vqa_eval's
answers_<split>.jsonl into SEED-Bench's upload (JSON lines {question_id, prediction}: the letter
SEED's rule reads) or MMBench's (a spreadsheet of the TSV without hint / category / source / image /
comment / l2-category, with a `prediction` column after the options).

The released `dataengine_minigpt4.json` (a list of {image, instruction, answer, options?,
choice_answer?, ...}) trains through the `dataengine_minigpt4` builder in DataEngine's three views:
`direct` (instruction -> answer, every row), `mc` (the lettered options -> the letter) and
`mc_shuffled` (the options in a seeded per-row permutation); the two choice views use the rows that
have 4 options and a choice_answer.
"""
from __future__ import annotations

import base64
import binascii
import csv
import json
import random
import sys
import zipfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from xml.sax.saxutils import escape

from mmrag.common.errors import ConfigError, DataFormatError, MissingPathError
from mmrag.common.jsonl import read_jsonl, write_jsonl
from mmrag.common.registry import DATASETS
from mmrag.common.tool_config import register_tool
from mmrag.datasets.builders import Builder, split_path
from mmrag.datasets.dataengine_items import MC_SUFFIX
from mmrag.datasets.multimodal_dataset import ConversationDataset, drop_missing_images
from mmrag.metrics.vqa_official import CIRCULAR_STRIDE, present_options, rotate_options, seed_choice
from mmrag.processors.boxes import task_prompt

Item = Dict[str, Any]
# Our wording of the short-answer requests (the benchmark's question goes in {question}).
SHORT_ANSWER_PROMPT = "{question} Answer the question with a short answer."
VIZWIZ_PROMPT = ("{question} Answer the question with a single word or phrase; "
                 "answer 'unanswerable' when the image does not show enough to answer.")
VSR_PROMPT = "Is this statement about the image true or false? {caption}"
PROMPT_STYLES = ("plain", "minigpt_v2")   # minigpt_v2: "[vqa] " before each question
MMBENCH_DROPPED = ("hint", "category", "source", "image", "comment", "l2-category")


def _load_json(path: Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"{path}: {what} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from err


def _require(row: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise DataFormatError(f"{where}: missing key(s) {', '.join(missing)}")


def styled(question: str, style: str) -> str:
    """The question as the model gets it: plain, or with MiniGPT-v2's [vqa] task identifier."""
    if style not in PROMPT_STYLES:
        raise ConfigError(f"prompt_style {style!r}: expected one of {', '.join(PROMPT_STYLES)}")
    return f"[vqa] {question}" if style == "minigpt_v2" else question


def mc_prompt(question: str, options: Mapping[str, str], hint: Optional[str] = None) -> str:
    """[hint newline] question, one 'A. text' line per option, then the letter request."""
    lines = ([hint.strip()] if hint and hint.strip() else []) + [question.strip()]
    lines += [f"{letter}. {text}" for letter, text in options.items()] + [MC_SUFFIX]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- OKVQA, VizWiz, VSR
def read_okvqa(questions_path: Path, annotations_path: Path, prompt: str = SHORT_ANSWER_PROMPT,
               style: str = "plain") -> List[Item]:
    """OKVQA (VQA layout): questions joined with their annotations by question_id; image
    COCO_<data_subtype>_<image_id as 12 digits>.jpg."""
    questions = _load_json(questions_path, "OKVQA questions file")
    annotations = _load_json(annotations_path, "OKVQA annotations file")
    if not isinstance(questions, dict) or "questions" not in questions:
        raise DataFormatError(f"{questions_path}: expected an object with a 'questions' list (VQA layout)")
    if not isinstance(annotations, dict) or "annotations" not in annotations:
        raise DataFormatError(f"{annotations_path}: expected an object with an 'annotations' list (VQA layout)")
    subtype = questions.get("data_subtype", "val2014")
    by_id = {}
    for n, ann in enumerate(annotations["annotations"]):
        _require(ann, ("question_id", "answers"), f"{annotations_path}: annotation {n}")
        by_id[ann["question_id"]] = ann
    items = []
    for n, q in enumerate(questions["questions"]):
        _require(q, ("question_id", "image_id", "question"), f"{questions_path}: question {n}")
        ann = by_id.get(q["question_id"])
        if ann is None:
            raise DataFormatError(f"{annotations_path}: no annotation for question_id {q['question_id']}")
        if not isinstance(ann["answers"], list) or not all(isinstance(a, dict) and "answer" in a for a in ann["answers"]):
            raise DataFormatError(f"{annotations_path}: question_id {q['question_id']}: answers must be a list of "
                                  f"{{answer: ...}} objects")
        answers = [str(a["answer"]) for a in ann["answers"]]
        if not answers:
            raise DataFormatError(f"{annotations_path}: question_id {q['question_id']} has no answers")
        items.append({"question_id": q["question_id"], "image": f"COCO_{subtype}_{int(q['image_id']):012d}.jpg",
                      "question": styled(prompt.format(question=q["question"]), style), "answers": answers,
                      "question_type": ann.get("question_type", ""), "answer_type": ann.get("answer_type", "")})
    return items


def read_vizwiz(path: Path, prompt: str = VIZWIZ_PROMPT, style: str = "plain") -> List[Item]:
    """VizWiz VQA annotations (a list of {image, question, answers: [{answer}], answer_type})."""
    rows = _load_json(path, "VizWiz annotation file")
    if not isinstance(rows, list):
        raise DataFormatError(f"{path}: expected a JSON list of VizWiz questions")
    items = []
    for n, row in enumerate(rows):
        _require(row, ("image", "question", "answers"), f"{path}: row {n}")
        items.append({"question_id": Path(row["image"]).stem, "image": row["image"],
                      "question": styled(prompt.format(question=row["question"]), style),
                      "answers": [str(a["answer"]) for a in row["answers"]],
                      "answer_type": row.get("answer_type", "")})
    return items


def read_vsr(path: Path, prompt: str = VSR_PROMPT, style: str = "plain") -> List[Item]:
    """VSR JSON lines {image, caption, label (1 true / 0 false), relation}."""
    if not Path(path).is_file():
        raise MissingPathError(f"{path}: VSR file does not exist")
    items = []
    for n, row in enumerate(read_jsonl(path), start=1):
        _require(row, ("image", "caption", "label"), f"{path}:{n}")
        if row["label"] not in (0, 1):
            raise DataFormatError(f"{path}:{n}: label {row['label']!r}; expected 1 (true) or 0 (false)")
        items.append({"question_id": f"vsr_{n}", "image": row["image"],
                      "question": styled(prompt.format(caption=row["caption"]), style),
                      "answer": "true" if row["label"] == 1 else "false", "relation": row.get("relation", "")})
    return items


# ----------------------------------------------------------------------------- SEED-Bench
def read_seed_bench(path: Path, style: str = "plain") -> Tuple[List[Item], Counter]:
    """SEED-Bench.json's image questions (video questions are left out and counted)."""
    data = _load_json(path, "SEED-Bench annotation file")
    if not isinstance(data, dict) or "questions" not in data:
        raise DataFormatError(f"{path}: expected an object with 'questions' (and 'question_type')")
    type_names = {int(v): k for k, v in data.get("question_type", {}).items()}
    items, skipped = [], Counter()
    for n, q in enumerate(data["questions"]):
        where = f"{path}: question {n}"
        _require(q, ("question_id", "question", "answer", "data_id", "choice_a", "choice_b", "choice_c", "choice_d"), where)
        if q.get("data_type", "image") != "image":
            skipped[f"data_type {q['data_type']} (only image questions are read)"] += 1
            continue
        options = {letter: str(q[f"choice_{letter.lower()}"]) for letter in "ABCD"}
        if q["answer"] not in options:
            raise DataFormatError(f"{where}: answer {q['answer']!r} is not one of A, B, C, D")
        type_id = q.get("question_type_id")
        items.append({"question_id": str(q["question_id"]), "image": q["data_id"],
                      "question": styled(mc_prompt(q["question"], options), style), "answer": q["answer"],
                      "options": options, "question_type": type_names.get(type_id, str(type_id)),
                      "answer_type": "mc"})
    return items, skipped


# ----------------------------------------------------------------------------- MMBench
def read_tsv(path: Path) -> List[Dict[str, str]]:
    """A TSV with a header row (cells may be quoted and hold newlines; base64 images are long)."""
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"{path}: TSV file does not exist")
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if rows and None in rows[0]:
        raise DataFormatError(f"{path}: a row has more cells than the header")
    return rows


def _index(row: Mapping[str, Any], where: str) -> int:
    try:
        return int(str(row["index"]).strip())
    except (KeyError, ValueError) as err:
        raise DataFormatError(f"{where}: index {row.get('index')!r} is not an integer") from err


def _image_suffix(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    return ".img"


def read_mmbench(path: Path, image_dir: Optional[Path] = None, style: str = "plain") -> List[Item]:
    """MMBench TSV rows -> items; with `image_dir` each row's base64 image is written there as
    <index>.<png|jpg> (the item's image, relative to image_dir). A test TSV has no answers ('')."""
    items = []
    for n, row in enumerate(read_tsv(path), start=2):
        where = f"{path}: line {n}"
        _require(row, ("index", "question", "A", "B"), where)
        options = present_options(row)
        index = _index(row, where)
        image = ""
        if image_dir is not None:
            _require(row, ("image",), where)
            try:
                data = base64.b64decode(row["image"], validate=True)
            except (binascii.Error, ValueError) as err:
                raise DataFormatError(f"{where}: image cell is not base64 ({err})") from err
            image = f"{index}{_image_suffix(data)}"
            Path(image_dir).mkdir(parents=True, exist_ok=True)
            (Path(image_dir) / image).write_bytes(data)
        answer = (row.get("answer") or "").strip()
        if answer and answer not in options:
            raise DataFormatError(f"{where}: answer {answer!r} is not one of the row's options {list(options)}")
        hint = row.get("hint") or ""
        hint = "" if hint.strip().lower() in ("nan", "none") else hint
        items.append({"question_id": index, "index": index, "image": image, "answer": answer, "options": options,
                      "question": styled(mc_prompt(row["question"], options, hint), style),
                      "hint": hint, "raw_question": row["question"], "category": row.get("category", ""),
                      "answer_type": "mc"})
    return items


def circular_copies(items: Sequence[Item], style: str = "plain") -> List[Item]:
    """Every MMBench item (index < 1e6) followed by its n-1 rotations (index + r * 1e6, options
    rotated by r, answer moved with them): what the circular scorer needs. A file that already holds
    copies (some index >= 1e6) is returned as it is."""
    if any(int(item["index"]) >= CIRCULAR_STRIDE for item in items):
        return list(items)
    out = []
    for item in items:
        out.append(item)
        for r in range(1, len(item["options"])):
            answer = item["answer"]
            if answer:
                options, answer = rotate_options(item["options"], answer, r)
            else:
                options, _ = rotate_options(item["options"], next(iter(item["options"])), r)
            index = int(item["index"]) + r * CIRCULAR_STRIDE
            out.append({**item, "question_id": index, "index": index, "options": options, "answer": answer,
                        "question": styled(mc_prompt(item["raw_question"], options, item["hint"]), style)})
    return out


def circular_from_mc_rows(rows: Sequence[Item], source: str = "questions") -> List[Item]:
    """Any vqa_jsonl multiple-choice rows ({question, options: {letter: text}, answer: letter}, the
    question written as `mc_prompt` writes it, e.g. the world's typed benchmark) as MMBench-style
    circular rows: row n gets index n and its rotations index n + r * 1e6; question_id becomes
    '<question_id>@r<r>'."""
    items = []
    for n, row in enumerate(rows):
        where = f"{source}: row {n + 1}"
        _require(row, ("question_id", "question", "options", "answer"), where)
        options = {str(k): str(v) for k, v in row["options"].items()}
        first = f"{next(iter(options))}. {next(iter(options.values()))}"
        lines = str(row["question"]).split("\n")
        if first not in lines:
            raise DataFormatError(f"{where}: the question does not list its options as '{first}' lines")
        if row["answer"] not in options:
            raise DataFormatError(f"{where}: answer {row['answer']!r} is not one of {list(options)}")
        items.append({**row, "index": n, "options": options, "hint": "", "category": row.get("category", row.get("qtype", "")),
                      "raw_question": "\n".join(lines[: lines.index(first)])})
    out = []
    for item in circular_copies(items):
        r, base = divmod(int(item["index"]), CIRCULAR_STRIDE)
        out.append({k: v for k, v in item.items() if k not in ("hint", "raw_question")}
                   | {"question_id": f"{items[base]['question_id']}@r{r}"})
    return out


# ----------------------------------------------------------------------------- submissions
def answers_by_id(rows: Sequence[Mapping[str, Any]], source: str) -> Dict[str, str]:
    """question_id (as a string) -> prediction, from vqa_eval's answers file rows."""
    out = {}
    for n, row in enumerate(rows, start=1):
        _require(row, ("question_id", "prediction"), f"{source}:{n}")
        out[str(row["question_id"])] = str(row["prediction"])
    return out


def _missing(expected: Sequence[str], found: Mapping[str, str], source: str) -> None:
    missing = [q for q in expected if q not in found]
    if missing:
        raise DataFormatError(f"{source}: no prediction for {len(missing)} question(s), first {missing[0]}; "
                              f"answer every question before writing a submission")


def write_seed_submission(annotation_path: Path, answers: Mapping[str, str], out_path: Path) -> int:
    """SEED-Bench upload: one {question_id, prediction} line per image question, the prediction
    being the letter SEED's rule reads (the answer's first character)."""
    items, _ = read_seed_bench(annotation_path)
    _missing([it["question_id"] for it in items], answers, "answers file")
    write_jsonl(out_path, [{"question_id": it["question_id"], "prediction": seed_choice(answers[it["question_id"]]) or ""}
                           for it in items])
    return len(items)


def write_mmbench_submission(tsv_path: Path, answers: Mapping[str, str], out_path: Path,
                             capitalize: bool = False) -> int:
    """MMBench upload (.xlsx, or .tsv by the out_path's suffix): the TSV's columns without the
    MMBENCH_DROPPED ones, with `prediction` after the options; `capitalize` upper-cases the first
    letter and lower-cases the rest of each prediction, as DataEngine's converter does."""
    rows = read_tsv(tsv_path)
    _missing([str(_index(r, f"{tsv_path}: line {n}")) for n, r in enumerate(rows, start=2)], answers, "answers file")
    header = [c for c in (rows[0].keys() if rows else []) if c not in MMBENCH_DROPPED]
    at = max((header.index(c) for c in "ABCDEFGHIJ" if c in header), default=len(header) - 1) + 1
    header.insert(at, "prediction")
    table = []
    for row in rows:
        text = answers[str(int(row["index"]))]  # checked by _index above
        text = text.capitalize() if capitalize else text
        table.append([text if c == "prediction" else row[c] for c in header])
    if Path(out_path).suffix == ".tsv":
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        with open(out_path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerows([header] + table)
    else:
        write_xlsx(Path(out_path), header, table)
    return len(rows)


def _column(n: int) -> str:
    name = ""
    n += 1
    while n:
        n, rest = divmod(n - 1, 26)
        name = chr(65 + rest) + name
    return name


def _cell(ref: str, value: Any) -> str:
    text = str(value)
    if text.lstrip("-").isdigit() and len(text) < 16:
        return f'<c r="{ref}"><v>{text}</v></c>'
    return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{escape(text)}</t></is></c>'


def write_xlsx(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """A one-sheet .xlsx (Office Open XML, inline strings, integers as numbers) with the stdlib."""
    lines = []
    for r, row in enumerate([list(header)] + [list(x) for x in rows], start=1):
        cells = "".join(_cell(f"{_column(c)}{r}", v) for c, v in enumerate(row))
        lines.append(f'<row r="{r}">{cells}</row>')
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel_ns = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{rel_ns}/officeDocument" Target="xl/workbook.xml"/></Relationships>'),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook {ns} xmlns:r="{rel_ns}">'
            '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{rel_ns}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'),
        "xl/worksheets/sheet1.xml": (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet {ns}><sheetData>'
            + "".join(lines) + "</sheetData></worksheet>"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, xml in parts.items():
            z.writestr(name, xml)
    tmp.replace(path)
    return path


# ----------------------------------------------------------------------------- released DataEngine data
ENGINE_VIEWS = ("direct", "mc", "mc_shuffled")
_LETTERS = "ABCD"


def read_dataengine_minigpt4(path: Path) -> Tuple[List[Item], Counter]:
    """The released file's rows with an id ('engine_<n>' unless the row has one); rows without image,
    instruction or answer are left out and counted by cause."""
    rows = _load_json(path, "DataEngine data file")
    if not isinstance(rows, list):
        raise DataFormatError(f"{path}: expected a JSON list of DataEngine rows")
    kept, skipped = [], Counter()
    for n, row in enumerate(rows):
        missing = [k for k in ("image", "instruction", "answer") if not isinstance(row, dict) or k not in row]
        if missing:
            skipped[f"missing {', '.join(missing)}"] += 1
            continue
        kept.append({**row, "id": str(row.get("id", f"engine_{n}"))})
    return kept, skipped


def has_choices(row: Mapping[str, Any]) -> bool:
    options = row.get("options")
    return isinstance(options, list) and len(options) == 4 and row.get("choice_answer") in tuple(_LETTERS)


def engine_view(row: Mapping[str, Any], view: str, seed: int = 0) -> Tuple[str, str]:
    """(question text, target) of one view of a released row."""
    if view == "direct":
        return str(row["instruction"]), str(row["answer"])
    if view not in ENGINE_VIEWS:
        raise ConfigError(f"DataEngine view {view!r}: expected one of {', '.join(ENGINE_VIEWS)}")
    options = [str(o) for o in row["options"]]
    correct = options[_LETTERS.index(row["choice_answer"])]
    if view == "mc_shuffled":
        random.Random(zlib.crc32(f"{seed}:{row['id']}".encode())).shuffle(options)
    lettered = {_LETTERS[i]: o for i, o in enumerate(options)}
    return mc_prompt(str(row["instruction"]), lettered), _LETTERS[options.index(correct)]


def engine_records(rows: Sequence[Item], views: Sequence[str], image_root: Path, seed: int = 0,
                   style: str = "minigpt_v2") -> List[Dict[str, Any]]:
    """Conversation records ({id, images, conversations}) of the rows' views."""
    records = []
    for view in views:
        for row in rows:
            if view != "direct" and not has_choices(row):
                continue
            text, target = engine_view(row, view, seed)
            human = task_prompt(text, "vqa") if style == "minigpt_v2" else f"<image>\n{text}"
            records.append({"id": f"{row['id']}_{view}", "images": [str(Path(image_root) / row["image"])],
                            "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": target}]})
    return records


@DATASETS.register("dataengine_minigpt4")
class DataEngineMiniGPT4Builder(Builder):
    """The released dataengine_minigpt4.json (`data_path`; images under `image_root`, e.g. the
    train_dataset folder) in the chosen views; `prompt_style` minigpt_v2 writes
    `<Img><image></Img> [vqa] ...` human turns (use with the minigpt_v2 template), llava `<image>\\n...`."""

    DEFAULTS = {"views": list(ENGINE_VIEWS), "seed": 0, "prompt_style": "minigpt_v2"}

    @classmethod
    def build(cls, cfg, processor, split: str, name: str) -> ConversationDataset:
        from mmrag.common.paths import require_path

        path = split_path(cfg, split)
        root = require_path(f"datasets.{name}.image_root", cfg.image_root, "image folder")
        if cfg.prompt_style not in ("minigpt_v2", "llava"):
            raise ConfigError(f"datasets.{name}.prompt_style={cfg.prompt_style!r}: expected minigpt_v2 or llava")
        for view in cfg.views:
            if view not in ENGINE_VIEWS:
                raise ConfigError(f"datasets.{name}.views: {view!r} is not one of {', '.join(ENGINE_VIEWS)}")
        rows, _ = read_dataengine_minigpt4(path)
        records = engine_records(rows, list(cfg.views), root, int(cfg.seed), cfg.prompt_style)
        if cfg.max_samples:
            records = records[: cfg.max_samples]
        records = drop_missing_images(records, cfg.missing_images, str(path))
        return ConversationDataset(records, processor.image_processor, name)


# ----------------------------------------------------------------------------- the data tools
BENCHMARKS = ("okvqa", "vizwiz", "vsr", "seed_bench", "mmbench", "circular_mc")
SCORER_OF = {"okvqa": "vqa_official", "vizwiz": "vizwiz", "vsr": "vsr", "seed_bench": "mc_seed",
             "mmbench": "mmbench_circular", "circular_mc": "mmbench_circular"}
CONVERT_BENCHMARK = register_tool("convert_benchmark", {
    "benchmark": None,         # okvqa | vizwiz | vsr | seed_bench | mmbench | circular_mc
    "questions": None,         # the benchmark's file (OKVQA: questions JSON; MMBench: TSV; circular_mc: vqa_jsonl)
    "annotations": None,       # OKVQA only: the annotations JSON
    "out_dir": None,           # writes questions.jsonl (+ images/ for MMBench)
    "prompt_style": "plain",   # plain | minigpt_v2 ("[vqa] " before each question)
    "circular": True,          # MMBench: add the rotated copies of each question
}, choices={"benchmark": BENCHMARKS, "prompt_style": PROMPT_STYLES}, required=("benchmark", "questions", "out_dir"))
BENCHMARK_SUBMISSION = register_tool("benchmark_submission", {
    "benchmark": None,         # seed_bench | mmbench
    "annotations": None,       # SEED-Bench.json or the MMBench TSV the answers are for
    "answers": None,           # vqa_eval's answers_<split>.jsonl
    "out": None,               # SEED: .jsonl; MMBench: .xlsx (or .tsv)
    "capitalize": False,       # MMBench: capitalise predictions as DataEngine's converter does
}, choices={"benchmark": ("seed_bench", "mmbench")}, required=("benchmark", "annotations", "answers", "out"))


def convert_benchmark(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """Write <out_dir>/questions.jsonl of one benchmark; returns counts and the eval config keys."""
    name, out_dir, style = cfg["benchmark"], Path(str(cfg["out_dir"])), cfg["prompt_style"]
    questions = Path(str(cfg["questions"]))
    skipped: Counter = Counter()
    image_root = out_dir / "images"
    if name == "okvqa":
        if not cfg["annotations"]:
            raise ConfigError("convert_benchmark: benchmark okvqa needs 'annotations' (the annotations JSON)")
        items = read_okvqa(questions, Path(str(cfg["annotations"])), style=style)
    elif name == "vizwiz":
        items = read_vizwiz(questions, style=style)
    elif name == "vsr":
        items = read_vsr(questions, style=style)
    elif name == "seed_bench":
        items, skipped = read_seed_bench(questions, style=style)
    elif name == "circular_mc":
        if not questions.is_file():
            raise MissingPathError(f"{questions}: question file does not exist (key 'questions')")
        items = circular_from_mc_rows(read_jsonl(questions), str(questions))
    else:
        items = read_mmbench(questions, image_root, style=style)
        items = circular_copies(items, style) if cfg["circular"] else items
    write_jsonl(out_dir / "questions.jsonl", items)
    return {"benchmark": name, "questions": len(items), "skipped": dict(skipped),
            "question_file": str(out_dir / "questions.jsonl"), "scorer": SCORER_OF[name],
            "image_root": str(image_root) if name == "mmbench" else "the folder the questions' image paths are relative to"}


def write_submission(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """Write the upload file of SEED-Bench or MMBench from vqa_eval's answers file."""
    answers_path = Path(str(cfg["answers"]))
    if not answers_path.is_file():
        raise MissingPathError(f"{answers_path}: answers file does not exist (key 'answers')")
    answers = answers_by_id(read_jsonl(answers_path), str(answers_path))
    if cfg["benchmark"] == "seed_bench":
        n = write_seed_submission(Path(str(cfg["annotations"])), answers, Path(str(cfg["out"])))
    else:
        n = write_mmbench_submission(Path(str(cfg["annotations"])), answers, Path(str(cfg["out"])),
                                     bool(cfg["capitalize"]))
    return {"benchmark": cfg["benchmark"], "rows": n, "out": str(cfg["out"])}
