"""The seeing pipeline: the image controls through vqa_eval with a model that looks (a rule answerer
reading the pixels), the report's multimodal gain, and the stage wiring (stage N starts from stage
N-1's weights; the evaluations read the last stage)."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf
from PIL import Image

import mmrag  # noqa: F401
from mmrag.common.errors import ConfigError
from mmrag.pipelines import seeing
from mmrag.tasks import vqa_eval
from mmrag.tasks.vqa_eval import VqaEvalTask

# every fixture image holds two colours of its own; a "no" question names a colour no image holds
COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 20),
           "cyan": (20, 220, 220), "magenta": (220, 20, 220), "white": (250, 250, 250), "black": (5, 5, 5),
           "orange": (250, 140, 0), "purple": (120, 0, 160), "brown": (120, 70, 20), "pink": (250, 170, 190)}
IMAGES = {"a.png": ("red", "green"), "b.png": ("blue", "yellow"), "c.png": ("cyan", "magenta"),
          "d.png": ("white", "black")}
ABSENT = ("orange", "purple", "brown", "pink")


class LookingAnswerer:
    """A model that sees: "Yes" iff the colour the question names is in the image's pixels."""

    def __init__(self, model, processor, batch_size, max_new_tokens, progress=False):
        pass

    def answer(self, requests):
        out = []
        for request in requests:
            colour = next(c for c in COLOURS if f" {c} " in request["prompt"])
            seen = set()
            for path in request["images"]:
                with Image.open(path) as image:
                    seen |= {rgb for _, rgb in image.convert("RGB").getcolors()}
            out.append("Yes." if COLOURS[colour] in seen else "No.")
        return out


class LookingTask(VqaEvalTask):
    def build_processor(self, cfg, model):
        return None


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setattr(vqa_eval, "ModelAnswerer", LookingAnswerer)
    (tmp_path / "images").mkdir()
    rows, qid = [], 0
    for name, (left, right) in IMAGES.items():
        image = Image.new("RGB", (32, 32), COLOURS[left])
        image.paste(COLOURS[right], (16, 0, 32, 32))
        image.save(tmp_path / "images" / name)
        for colour, label in ((left, "yes"), (right, "yes"), *((c, "no") for c in ABSENT[:2])):
            qid += 1
            rows.append({"question_id": qid, "image": name, "text": f"Is there a {colour} thing in the image?", "label": label})
    for split in seeing.SPLITS:
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def evaluate(world, control):
    ev = OmegaConf.merge(VqaEvalTask.DEFAULTS["evaluation"], {
        "question_file": str(world / "{split}.jsonl"), "image_root": str(world / "images"),
        "splits": list(seeing.SPLITS), "image_control": control, "batch_size": 4})
    cfg = OmegaConf.create({"evaluation": ev, "model": {}})
    return LookingTask(cfg).evaluate(None, cfg, world / "out" / f"pope_{control}")


def test_a_model_that_sees_falls_to_chance_under_every_control(world):
    # by hand: with the image every answer is right; a grey image, another image (its colours are
    # not the question's) or no image makes every answer "No.": the 8 "no" questions right, the 8 "yes" wrong
    expected = {"none": 1.0, "blank": 0.5, "shuffled": 0.5, "text_only": 0.5}
    for control, accuracy in expected.items():
        result = evaluate(world, control)
        for split in seeing.SPLITS:
            assert result[split]["accuracy"] == pytest.approx(accuracy)
            assert result[split]["yes_ratio"] == pytest.approx(0.5 if control == "none" else 0.0)


def test_report_gives_the_multimodal_gain_with_a_paired_interval(world):
    for control in seeing.CONTROLS:
        evaluate(world, control)
    opt = seeing.SeeingOptions(out="out")
    result = seeing.report(world, opt, [])
    gain = result["gains"]["blank"]["random"]
    # 16 questions: the 8 "yes" ones gain 1, the 8 "no" ones 0 -> +0.5; every resample lies in (0, 1]
    assert gain["diff"] == pytest.approx(0.5) and 0 < gain["low"] <= 0.5 <= gain["high"] <= 1
    assert not gain["within_noise"]
    assert "| blank | +50.0 [" in result["table"] and (world / "out" / "report.md").is_file()


def test_each_stage_starts_from_the_previous_one_and_the_evaluations_read_the_last():
    stages = seeing.build_stages(seeing.SeeingOptions(out="o", overrides=["run.seed=3"]))
    names = [s.name for s in stages]
    assert names == ["world", "features", "stage0_text", "stage1_align", "stage2_instruct",
                     "pope_none", "pope_blank", "pope_shuffled", "pope_text_only"]
    commands = {s.name: s.command for s in stages}
    assert "model.checkpoint=null" in commands["stage0_text"]
    assert "model.checkpoint=o/stage0_text/final" in commands["stage1_align"]
    assert "model.checkpoint=o/stage1_align/final" in commands["stage2_instruct"]
    for control in seeing.CONTROLS:
        command = commands[f"pope_{control}"]
        assert "model.checkpoint=o/stage2_instruct/final" in command and f"evaluation.image_control={control}" in command
        assert "run.seed=3" in command


def _balanced_yesno(world, split):
    """Presence questions of a split: every annotated object "yes" on its image and "no" on the next image without it."""
    data = json.loads((world / "annotations" / f"instances_{split}.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    files = {im["id"]: im["file_name"] for im in data["images"]}
    objects = {i: set() for i in files}
    for ann in data["annotations"]:
        objects[ann["image_id"]].add(names[ann["category_id"]])
    order, records = sorted(files), []
    for k, image in enumerate(order):
        for name in sorted(objects[image]):
            other = next((j for j in order[k + 1:] + order[:k] if name not in objects[j]), None)
            for shown, answer in ((image, "Yes."), (other, "No.")):
                if shown is not None:
                    records.append({"id": f"{len(records)}", "image": f"images/{files[shown]}", "conversations": [
                        {"from": "human", "value": f"<image>\nIs there a {name} in the image?"},
                        {"from": "gpt", "value": answer}]})
    (world / "llava" / f"yesno_balanced_{split}.json").write_text(json.dumps(records))


def test_the_pipeline_runs_end_to_end_on_a_tiny_world(tmp_path):
    """Every stage with a random 64-px tower, a 1-layer LLM and 2 steps: wiring, not quality. The first
    12 questions of each split are about 2 images (the shuffled control needs two)."""
    from mmrag.common.cli import REPO_ROOT
    from mmrag.datasets.world.generator import generate_world

    world = tmp_path / "world"
    generate_world("tiny", 0, world, progress=False)
    for split in ("train", "test"):
        _balanced_yesno(world, split)
    w, out = str(world), str(tmp_path / "run")
    common = ["model.vision_tower.path=null", "model.vision_tower.image_size=64",
              f"model.vision_tower.feature_cache={tmp_path}/cache", "model.llm.config.hidden_size=32",
              "model.llm.config.intermediate_size=64", "model.llm.config.num_hidden_layers=1",
              "model.llm.config.num_attention_heads=2", "model.llm.config.num_key_value_heads=2"]
    train = ["run.max_steps=2", "run.batch_size=4", "run.warmup_steps=0"]
    stage = {
        "stage0_text": [*train, f"datasets.corpus.data_path={w}/corpus.csv",
                        f"datasets.captions_text.data_path={w}/annotations/captions_{{split}}.json"],
        "stage1_align": [*train, f"datasets.captions.data_path={w}/annotations/captions_{{split}}.json",
                         f"datasets.captions.image_root={w}/images", f"datasets.regions.image_root={w}/images",
                         f"datasets.regions.data_path={w}/regions/region_descriptions.json",
                         f"datasets.regions.split_images={w}/annotations/instances_{{split}}.json"],
        "stage2_instruct": [*train, f"datasets.llava_instruct.data_path={w}/llava/instruct_{{split}}.json",
                            f"datasets.llava_instruct.image_root={w}",
                            f"datasets.yesno_balanced.data_path={w}/llava/yesno_balanced_{{split}}.json",
                            f"datasets.yesno_balanced.image_root={w}"],
    }
    pope = [f"evaluation.question_file={w}/pope/{{split}}.jsonl", f"evaluation.image_root={w}/images"]
    stage.update({f"pope_{c}": pope for c in seeing.CONTROLS})
    opt = seeing.SeeingOptions(out=out, overrides=common, stage_overrides=stage, pope_max=12, image_dir=f"{w}/images",
                               world=w, in_process=True)
    result = seeing.run_seeing(opt, root=REPO_ROOT)
    for control in seeing.CONTROLS:
        assert set(result["results"][control]) == set(seeing.SPLITS)
        assert all(r["num"] == 12 for r in result["results"][control].values())
    assert set(result["gains"]) == {"blank", "shuffled", "text_only"}
    log = [json.loads(line)["stage"] for line in (tmp_path / "run" / "stages.jsonl").read_text().splitlines()]
    assert log == [s.name for s in seeing.build_stages(opt)]
    # a second run finds every output and runs nothing
    assert seeing.run_seeing(opt, root=REPO_ROOT)["results"] == result["results"]
    assert len((tmp_path / "run" / "stages.jsonl").read_text().splitlines()) == len(log)


def test_large_setting_on_val_questions_builds_its_stages():
    opt = seeing.SeeingOptions(out="o", setting="large", questions="val")
    stages = seeing.build_stages(opt)
    assert [s.name for s in stages] == ["world", "features", "smollm2", "pope_none", "pope_blank", "pope_shuffled", "pope_text_only"]
    train, pope = stages[2].command, stages[3].command
    assert "train_configs/seeing_large_smollm2.yaml" in train and "model.checkpoint=null" in train
    assert "eval_configs/seeing_large_pope.yaml" in pope and "model.checkpoint=o/smollm2/final" in pope
    assert "evaluation.question_file=dataset/world_small/pope_val/{split}.jsonl" in pope
    assert "evaluation.splits=[all,random,popular,adversarial]" in pope
    assert opt.splits == ("all", "random", "popular", "adversarial")
    with pytest.raises(ConfigError, match="setting must be one of small, large"):
        seeing.build_stages(seeing.SeeingOptions(setting="huge"))


def test_the_world_is_generated_first_only_for_a_preset_folder_and_an_empty_image_folder_is_refused(tmp_path):
    from mmrag.common.cli import REPO_ROOT
    from mmrag.common.errors import UserError

    default = seeing.build_stages(seeing.SeeingOptions())
    assert default[0].name == "world" and default[0].outputs[0] == "dataset/world_small/world.json"
    assert default[0].command[1:] == ["data_process/make_world.py", "--preset", "small", "--seed", "0",
                                      "--out", "dataset/world_small", "--workers", "1"]
    assert [s.name for s in seeing.build_stages(seeing.SeeingOptions(world=str(tmp_path / "mine")))][:1] == ["features"]
    (tmp_path / "images").mkdir()
    with pytest.raises(UserError, match="no .jpg image in"):
        seeing.cache_features(REPO_ROOT, "train_configs/seeing_small_grounded.yaml",
                              [f"model.vision_tower.feature_cache={tmp_path}/cache", "model.vision_tower.path=null"],
                              str(tmp_path / "images"), tmp_path / "done.json")
    assert not (tmp_path / "done.json").exists()
