"""A DataEngine benchmark by config, end to end: an MMBench TSV (base64 images) converted to vqa_eval's
question file, answered by a scripted answerer through the vqa_eval task, scored with circular
evaluation (worked by hand), and turned into the MMBench upload file."""
from __future__ import annotations

import base64
import io
import re
import zipfile

import pytest
from omegaconf import OmegaConf
from PIL import Image

import mmrag  # noqa: F401
from mmrag.datasets.benchmarks import convert_benchmark, write_submission
from mmrag.tasks import vqa_eval
from mmrag.tasks.vqa_eval import VqaEvalTask


def _png(colour):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


HEADER = "index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\timage\tsource\tl2-category\tcomment\tsplit"
ROWS = [f"0\tWhat colour is it?\tnan\tred\tblue\t\t\tA\tattribute\t{_png((255, 0, 0))}\ts\tl2\tnan\tdev",
        f"1\tWhere is the bird?\tLook up.\ttree\troof\tsky\tcar\tC\tspatial\t{_png((0, 0, 255))}\ts\tl2\tnan\tdev"]


class Scripted:
    """Picks the option 'red' or 'sky', except that it answers B whenever 'sky' is option A."""

    def __init__(self, *args, **kwargs):
        pass

    def answer(self, requests):
        out = []
        for r in requests:
            options = dict(re.findall(r"^([A-D])\. (\w+)$", r["prompt"], re.MULTILINE))
            letter = next(k for k, v in options.items() if v in ("red", "sky"))
            out.append("The answer is B" if options.get("A") == "sky" else f"({letter})")
        return out


class NoProcessorTask(VqaEvalTask):
    def build_processor(self, cfg, model):
        return None


def test_mmbench_by_config(tmp_path, monkeypatch):
    tsv = tmp_path / "mmbench_dev.tsv"
    tsv.write_text("\n".join([HEADER] + ROWS) + "\n")
    report = convert_benchmark({"benchmark": "mmbench", "questions": str(tsv), "annotations": None,
                                "out_dir": str(tmp_path / "mmb"), "prompt_style": "plain", "circular": True})
    monkeypatch.setattr(vqa_eval, "ModelAnswerer", Scripted)
    ev = OmegaConf.merge(VqaEvalTask.DEFAULTS["evaluation"], {
        "format": "vqa_jsonl", "question_file": report["question_file"], "image_root": str(tmp_path / "mmb" / "images"),
        "splits": ["dev"], "scorer": "mmbench_circular"})
    cfg = OmegaConf.create({"evaluation": ev, "model": {}})
    metrics = NoProcessorTask(cfg).evaluate(None, cfg, tmp_path / "out")["dev"]
    # question 0: 2 copies, both right; question 1: 4 copies, the one with sky under A answered B -> 1 of 2
    assert metrics["accuracy"] == 0.5 and metrics["vanilla_accuracy"] == pytest.approx(5 / 6)
    write_submission({"benchmark": "mmbench", "annotations": str(tsv), "out": str(tmp_path / "up.xlsx"),
                      "answers": str(tmp_path / "out" / "answers_dev.jsonl"), "capitalize": False})
    with zipfile.ZipFile(tmp_path / "up.xlsx") as z:
        sheet = z.read("xl/worksheets/sheet1.xml").decode()
    assert "<t xml:space=\"preserve\">prediction</t>" in sheet and "<t xml:space=\"preserve\">(A)</t>" in sheet
