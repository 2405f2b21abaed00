"""Benchmark readers on hand-written files in the official layouts (OKVQA questions + annotations,
VizWiz, VSR, SEED-Bench.json, MMBench TSV with base64 images), the SEED-Bench / MMBench submission
writers, and the released dataengine_minigpt4.json in its three views."""
from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from xml.etree import ElementTree

import pytest
from omegaconf import OmegaConf
from PIL import Image

import mmrag  # noqa: F401  (registers builders and scorers)
from mmrag.common.errors import ConfigError, DataFormatError, MissingPathError
from mmrag.common.jsonl import read_jsonl, write_jsonl
from mmrag.common.registry import DATASETS, SCORERS
from mmrag.datasets.benchmarks import (
    circular_copies,
    convert_benchmark,
    engine_records,
    read_dataengine_minigpt4,
    read_mmbench,
    read_okvqa,
    read_seed_bench,
    read_vizwiz,
    read_vsr,
    write_submission,
)
from mmrag.datasets.multimodal_dataset import BUILDER_DEFAULTS

SUFFIX = "Answer with the option's letter from the given choices directly."


def _dump(path, obj):
    path.write_text(json.dumps(obj))
    return path


def _answers(words):
    return [{"answer_id": i + 1, "answer": w, "raw_answer": w, "answer_confidence": "yes"} for i, w in enumerate(words)]


@pytest.fixture
def okvqa(tmp_path):
    questions = _dump(tmp_path / "OpenEnded_mscoco_val2014_questions.json", {"data_subtype": "val2014", "questions": [
        {"image_id": 297147, "question": "What sport can you use this for?", "question_id": 2971475},
        {"image_id": 1431, "question": "Is it cold?", "question_id": 14315}]})
    annotations = _dump(tmp_path / "mscoco_val2014_annotations.json", {"annotations": [
        {"image_id": 297147, "question_id": 2971475, "question_type": "one", "answer_type": "other",
         "answers": _answers(["race"] * 5 + ["motocross"] * 5)},
        {"image_id": 1431, "question_id": 14315, "question_type": "is it", "answer_type": "yes/no",
         "answers": _answers(["yes"] * 10)}]})
    return questions, annotations


def test_okvqa_reader_and_official_score(okvqa):
    items = read_okvqa(*okvqa, style="minigpt_v2")
    assert [it["image"] for it in items] == ["COCO_val2014_000000297147.jpg", "COCO_val2014_000000001431.jpg"]
    assert items[0]["question"] == "[vqa] What sport can you use this for? Answer the question with a short answer."
    assert items[0]["answers"] == ["race"] * 5 + ["motocross"] * 5
    # q1: annotators disagree -> normalised, 'Race' matches 5 of 10 -> 1.0
    # q2: all ten say 'yes' -> nothing normalised, 'yes.' != 'yes' -> 0.0 (the minigpt4 evaluator's rule)
    scores, metrics = SCORERS.get("vqa_official")().score(["Race", "Yes."], items)
    assert scores == [1.0, 0.0] and metrics["overall"] == 50.0
    assert metrics["per_question_type"] == {"is it": 0.0, "one": 100.0}


def test_okvqa_needs_every_annotation(okvqa, tmp_path):
    questions, _ = okvqa
    bad = _dump(tmp_path / "ann.json", {"annotations": []})
    with pytest.raises(DataFormatError, match="no annotation for question_id 2971475"):
        read_okvqa(questions, bad)
    with pytest.raises(MissingPathError, match="OKVQA annotations file does not exist"):
        read_okvqa(questions, tmp_path / "absent.json")


def test_vizwiz_and_vsr(tmp_path):
    vizwiz = _dump(tmp_path / "val.json", [{"image": "VizWiz_val_00000001.jpg", "question": "What is this?",
                                             "answers": [{"answer": "soup", "answer_confidence": "yes"}] * 2
                                             + [{"answer": "unanswerable", "answer_confidence": "no"}] * 8,
                                             "answer_type": "other", "answerable": 1}])
    items = read_vizwiz(vizwiz)
    assert items[0]["question_id"] == "VizWiz_val_00000001" and items[0]["answers"][:2] == ["soup", "soup"]
    vsr = tmp_path / "test.jsonl"
    vsr.write_text('{"image": "000000085637.jpg", "caption": "The umbrella is left of the bed.", "label": 1, "relation": "left of"}\n'
                   '{"image": "000000000001.jpg", "caption": "The cat is on the car.", "label": 0, "relation": "on"}\n')
    items = read_vsr(vsr)
    assert [it["answer"] for it in items] == ["true", "false"]
    assert items[0]["question"] == "Is this statement about the image true or false? The umbrella is left of the bed."
    vsr.write_text('{"image": "x.jpg", "caption": "c", "label": 2}\n')
    with pytest.raises(DataFormatError, match=r"test.jsonl:1: label 2"):
        read_vsr(vsr)


@pytest.fixture
def seed(tmp_path):
    def question(qid, data_type, answer):
        return {"answer": answer, "choice_a": "cat", "choice_b": "dog", "choice_c": "bird", "choice_d": "fish",
                "data_id": f"{qid}_1.jpg", "data_type": data_type, "question": "Which animal is shown?",
                "question_id": qid, "question_type_id": 2}
    return _dump(tmp_path / "SEED-Bench.json", {"question_type": {"Scene Understanding": 1, "Instance Identity": 2},
                                                "questions": [question("101669", "image", "B"),
                                                              question("2000", "video", "A"),
                                                              question("101670", "image", "D")]})


def test_seed_reader_and_submission(seed, tmp_path):
    items, skipped = read_seed_bench(seed)
    assert [it["question_id"] for it in items] == ["101669", "101670"]
    assert skipped == {"data_type video (only image questions are read)": 1}
    assert items[0]["question"] == f"Which animal is shown?\nA. cat\nB. dog\nC. bird\nD. fish\n{SUFFIX}"
    assert items[0]["question_type"] == "Instance Identity" and items[0]["image"] == "101669_1.jpg"
    answers = tmp_path / "answers_test.jsonl"
    write_jsonl(answers, [{"question_id": "101669", "prediction": "b. dog"}, {"question_id": "101670", "prediction": "(D)"}])
    out = tmp_path / "seed_upload.jsonl"
    write_submission({"benchmark": "seed_bench", "annotations": str(seed), "answers": str(answers), "out": str(out),
                      "capitalize": False})
    # SEED's rule reads the first character: 'b. dog' -> B, '(D)' -> '('
    assert read_jsonl(out) == [{"question_id": "101669", "prediction": "B"}, {"question_id": "101670", "prediction": "("}]
    write_jsonl(answers, [{"question_id": "101669", "prediction": "B"}])
    with pytest.raises(DataFormatError, match="no prediction for 1 question"):
        write_submission({"benchmark": "seed_bench", "annotations": str(seed), "answers": str(answers), "out": str(out),
                          "capitalize": False})


def _png(colour):
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), colour).save(buf, format="PNG")
    return buf.getvalue()


MMB_HEADER = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source",
              "l2-category", "comment", "split"]


@pytest.fixture
def mmbench(tmp_path):
    rows = [["0", "What colour is it?", "nan", "red", "blue", "", "", "A", "attribute",
             base64.b64encode(_png((255, 0, 0))).decode(), "src", "l2", "nan", "dev"],
            ["1", "Where is the bird?", "Look at the sky.", "tree", "roof", "sky", "car", "C", "spatial",
             base64.b64encode(_png((0, 0, 255))).decode(), "src", "l2", "nan", "dev"]]
    path = tmp_path / "mmbench_dev.tsv"
    path.write_text("\n".join("\t".join(r) for r in [MMB_HEADER] + rows) + "\n")
    return path


def test_mmbench_reader_and_circular_copies(mmbench, tmp_path):
    items = read_mmbench(mmbench, tmp_path / "images")
    assert items[0]["options"] == {"A": "red", "B": "blue"}   # empty C and D are no options
    assert items[0]["question"] == f"What colour is it?\nA. red\nB. blue\n{SUFFIX}"
    assert items[1]["question"] == f"Look at the sky.\nWhere is the bird?\nA. tree\nB. roof\nC. sky\nD. car\n{SUFFIX}"
    assert (tmp_path / "images" / "0.png").read_bytes() == _png((255, 0, 0))
    copies = circular_copies(items)
    assert [c["index"] for c in copies] == [0, 1000000, 1, 1000001, 2000001, 3000001]
    assert circular_copies(copies) == copies                    # a file that already has its copies
    assert copies[1]["options"] == {"A": "blue", "B": "red"} and copies[1]["answer"] == "B"
    assert copies[3]["options"] == {"A": "roof", "B": "sky", "C": "car", "D": "tree"} and copies[3]["answer"] == "B"
    # every copy's answer letter still names the sky / red
    assert all(c["options"][c["answer"]] == ("red" if c["index"] % 1000000 == 0 else "sky") for c in copies)
    preds = ["A", "B", "C", "(B)", "The answer is B", "sky"]     # copy 2000001 wrong (its sky is under A)
    scores, metrics = SCORERS.get("mmbench_circular")().score(preds, copies)
    assert metrics["accuracy"] == 0.5 and metrics["vanilla_accuracy"] == pytest.approx(5 / 6)
    assert metrics["per_category"] == {"attribute": 100.0, "spatial": 0.0}


def _xlsx_rows(path):
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(path) as z:
        assert {"[Content_Types].xml", "xl/workbook.xml", "xl/worksheets/sheet1.xml"} <= set(z.namelist())
        root = ElementTree.fromstring(z.read("xl/worksheets/sheet1.xml"))
    rows = []
    for row in root.iter(f"{{{ns['m']}}}row"):
        rows.append(["".join(c.itertext()) for c in row.findall("m:c", ns)])
    return rows


def test_mmbench_submission(mmbench, tmp_path):
    answers = tmp_path / "answers.jsonl"
    write_jsonl(answers, [{"question_id": 0, "prediction": "a. red"}, {"question_id": 1, "prediction": "The answer is C"}])
    out = tmp_path / "mmbench.xlsx"
    cfg = {"benchmark": "mmbench", "annotations": str(mmbench), "answers": str(answers), "out": str(out), "capitalize": False}
    assert write_submission(cfg)["rows"] == 2
    rows = _xlsx_rows(out)
    assert rows[0] == ["index", "question", "A", "B", "C", "D", "prediction", "answer", "split"]
    assert rows[1] == ["0", "What colour is it?", "red", "blue", "", "", "a. red", "A", "dev"]
    cfg.update(capitalize=True, out=str(tmp_path / "mmbench.tsv"))
    write_submission(cfg)
    lines = (tmp_path / "mmbench.tsv").read_text().splitlines()
    assert lines[1].split("\t")[6] == "A. red" and lines[2].split("\t")[6] == "The answer is c"


def test_convert_benchmark_writes_vqa_jsonl(mmbench, okvqa, tmp_path):
    report = convert_benchmark({"benchmark": "mmbench", "questions": str(mmbench), "annotations": None,
                                "out_dir": str(tmp_path / "mmb"), "prompt_style": "plain", "circular": True})
    assert report["questions"] == 6 and report["scorer"] == "mmbench_circular"
    rows = read_jsonl(tmp_path / "mmb" / "questions.jsonl")
    assert {"question_id", "image", "question", "answer", "options"} <= set(rows[0])
    assert (tmp_path / "mmb" / "images" / rows[0]["image"]).is_file()
    with pytest.raises(ConfigError, match="annotations"):
        convert_benchmark({"benchmark": "okvqa", "questions": str(okvqa[0]), "annotations": None,
                           "out_dir": str(tmp_path / "ok"), "prompt_style": "plain", "circular": True})


# ----------------------------------------------------------------------------- released DataEngine data
ENGINE_ROWS = [
    {"image": "vg/VG_100K/1.jpg", "instruction": "What colour is the bus?", "answer": "The bus is red.",
     "short_answer": "red", "options": ["blue", "red", "green", "white"], "choice_answer": "B", "qtype": "attribute"},
    {"image": "vg/VG_100K/2.jpg", "instruction": "Describe the scene.", "answer": "A quiet street."},
    {"instruction": "no image, no answer"},
]


def _lettered(text):
    return dict(re.findall(r"^([A-D])\. (.+)$", text, re.MULTILINE))


def test_dataengine_file_in_three_views(tmp_path):
    rows, skipped = read_dataengine_minigpt4(_dump(tmp_path / "dataengine_minigpt4.json", ENGINE_ROWS))
    assert [r["id"] for r in rows] == ["engine_0", "engine_1"] and skipped == {"missing image, answer": 1}
    records = engine_records(rows, ["direct", "mc", "mc_shuffled"], tmp_path)
    assert [r["id"] for r in records] == ["engine_0_direct", "engine_1_direct", "engine_0_mc", "engine_0_mc_shuffled"]
    direct, mc, shuffled = records[0], records[2], records[3]
    assert direct["conversations"] == [{"from": "human", "value": "<Img><image></Img> [vqa] What colour is the bus?"},
                                       {"from": "gpt", "value": "The bus is red."}]
    assert mc["conversations"][0]["value"] == ("<Img><image></Img> [vqa] What colour is the bus?\n"
                                               f"A. blue\nB. red\nC. green\nD. white\n{SUFFIX}")
    assert mc["conversations"][1]["value"] == "B"
    options = _lettered(shuffled["conversations"][0]["value"])
    assert sorted(options.values()) == ["blue", "green", "red", "white"]
    assert options[shuffled["conversations"][1]["value"]] == "red"
    assert records[0]["images"] == [str(tmp_path / "vg/VG_100K/1.jpg")]
    llava = engine_records(rows, ["direct"], tmp_path, style="llava")
    assert llava[0]["conversations"][0]["value"] == "<image>\nWhat colour is the bus?"


class _Processor:
    image_processor = staticmethod(lambda image: image)


def test_dataengine_builder(tmp_path):
    path = _dump(tmp_path / "dataengine_minigpt4.json", ENGINE_ROWS)
    for name in ("1.jpg", "2.jpg"):
        (tmp_path / "vg" / "VG_100K").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "vg" / "VG_100K" / name)
    builder = DATASETS.get("dataengine_minigpt4")
    cfg = OmegaConf.create({**BUILDER_DEFAULTS, **builder.DEFAULTS, "data_path": str(path), "image_root": str(tmp_path)})
    assert len(builder.build(cfg, _Processor(), "train", "engine")) == 4
    (tmp_path / "vg" / "VG_100K" / "2.jpg").unlink()
    assert len(builder.build(cfg, _Processor(), "train", "engine")) == 3      # the direct view of row 1 is skipped
    cfg.views = ["mc", "multiple"]
    with pytest.raises(ConfigError, match="views: 'multiple'"):
        builder.build(cfg, _Processor(), "train", "engine")


def test_circular_from_any_mc_file(tmp_path):
    rows = [{"question_id": "w1", "image": "images/1.jpg", "qtype": "count", "answer": "C", "answer_type": "mc",
             "options": {"A": "two", "B": "one", "C": "zero", "D": "four"},
             "question": f"How many cups are there?\nA. two\nB. one\nC. zero\nD. four\n{SUFFIX}"}]
    write_jsonl(tmp_path / "eval_mc_val.jsonl", rows)
    report = convert_benchmark({"benchmark": "circular_mc", "questions": str(tmp_path / "eval_mc_val.jsonl"),
                                "annotations": None, "out_dir": str(tmp_path / "c"), "prompt_style": "plain",
                                "circular": True})
    out = read_jsonl(tmp_path / "c" / "questions.jsonl")
    assert report["questions"] == 4 and [r["question_id"] for r in out] == ["w1@r0", "w1@r1", "w1@r2", "w1@r3"]
    assert [r["index"] for r in out] == [0, 1000000, 2000000, 3000000]
    # rotation 1 puts B's text under A: one, zero, four, two -> 'zero' under B
    assert out[1]["question"] == f"How many cups are there?\nA. one\nB. zero\nC. four\nD. two\n{SUFFIX}"
    assert [r["answer"] for r in out] == ["C", "B", "A", "D"] and out[0]["category"] == "count"
    bad = [{**rows[0], "question": "How many cups are there? (no options listed)"}]
    write_jsonl(tmp_path / "bad.jsonl", bad)
    with pytest.raises(DataFormatError, match="row 1: the question does not list its options as 'A. two' lines"):
        convert_benchmark({"benchmark": "circular_mc", "questions": str(tmp_path / "bad.jsonl"), "annotations": None,
                           "out_dir": str(tmp_path / "c"), "prompt_style": "plain", "circular": True})


def test_malformed_rows_are_named(tmp_path, okvqa):
    questions, _ = okvqa
    bad = _dump(tmp_path / "ann_bad.json", {"annotations": [
        {"question_id": 2971475, "answers": ["race"] * 10}, {"question_id": 14315, "answers": _answers(["yes"] * 10)}]})
    with pytest.raises(DataFormatError, match="question_id 2971475: answers must be a list of"):
        read_okvqa(questions, bad)
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("\t".join(MMB_HEADER) + "\n" + "\t".join(["x1", "q", "", "a", "b", "", "", "A", "c", "", "", "", "", ""]) + "\n")
    with pytest.raises(DataFormatError, match=r"bad.tsv: line 2: index 'x1' is not an integer"):
        read_mmbench(tsv)
