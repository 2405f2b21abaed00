"""The CaMML pipeline: image controls on the query image only, random neighbours never the problem
itself, and an end-to-end run on the tiny world with tiny models (every stage, the report's table)."""
from __future__ import annotations

import copy
import json

import pytest

from mmrag.retrieval.clip_embedder import TINY_CLIP_CFG
import yaml

import mmrag  # noqa: F401
from mmrag.common.tool_config import load_tool_config
from mmrag.datasets.world.scienceqa import write_scienceqa
from mmrag.pipelines import camml
from tests.conftest import TINY_LLM, TINY_TOWER


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from mmrag.datasets.world import generate_world

    out = tmp_path_factory.mktemp("worlds") / "tiny_seed0"
    generate_world("tiny", 0, out, progress=False)
    return out, None


def _record(images, text, has_image=True):
    return {"id": "x", "images": list(images), "item": {"has_image": has_image},
            "conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": "ANSWER: A."}]}


def test_controls_touch_the_query_image_only(tmp_path):
    from PIL import Image

    paths = []
    for n in range(3):
        paths.append(str(tmp_path / f"{n}.png"))
        Image.new("RGB", (8, 6), (n * 50, 0, 0)).save(paths[-1])
    recs = [_record([paths[0], paths[1]], "Example 1:\n<image>\nq1\nNow this question:\n<image>\nq"),
            _record([paths[2]], "<image>\nq"), _record([], "q", has_image=False)]
    text_only = copy.deepcopy(recs)
    camml.apply_control(text_only, "text_only", 0, tmp_path / "ctl")
    assert text_only[0]["images"] == [paths[0]]
    assert text_only[0]["conversations"][0]["value"] == "Example 1:\n<image>\nq1\nNow this question:\nq"
    assert text_only[1]["images"] == [] and text_only[1]["conversations"][0]["value"] == "q"
    shuffled = copy.deepcopy(recs)
    camml.apply_control(shuffled, "shuffled", 0, tmp_path / "ctl")
    assert shuffled[0]["images"] == [paths[0], paths[2]] and shuffled[1]["images"] == [paths[1]]  # swapped
    blank = copy.deepcopy(recs)
    camml.apply_control(blank, "blank", 0, tmp_path / "ctl")
    assert blank[0]["images"][0] == paths[0] and blank[0]["images"][1].endswith("blank_8x6.png")
    assert recs[2] == blank[2] == shuffled[2]


def test_random_neighbours_exclude_self_and_are_seeded(tiny_world):
    world, _ = tiny_world
    write_scienceqa(world, 0)
    a = camml.random_neighbours(str(world / "scienceqa"), "train", "train", 4, seed=1)
    assert a == camml.random_neighbours(str(world / "scienceqa"), "train", "train", 4, seed=1)
    assert all(pid not in nbs and len(nbs) == 4 and len(set(nbs)) == 4 for pid, nbs in a["neighbours"].items())
    assert a != camml.random_neighbours(str(world / "scienceqa"), "train", "train", 4, seed=2)


def _tiny_configs(tmp_path, world):
    model = {"arch": "mm_llm", "vision_tower": {"type": "hf_clip", "config": dict(TINY_TOWER), "select_layer": -1},
             "llm": {"config": {**TINY_LLM, "max_position_embeddings": 1024}, "freeze": False},
             "lora": {"enabled": False}, "max_txt_len": 1024}
    sqa = {"builder": "scienceqa", "data_path": str(world / "scienceqa"), "prompt_format": "QCM-A", "context": "none"}
    run = {"task": "instruction_tuning", "batch_size": 4, "max_steps": 2, "evaluate": False, "progress": False,
           "log_every": 1, "device": "cpu"}
    paths = {}
    for variant, context in (("base", "none"), ("camml", "camml"), ("text_icl", "text_icl")):
        m = copy.deepcopy(model)
        if variant == "camml":
            m["context_module"] = {"type": "camml_perceiver", "width": 16, "heads": 2, "layers": 1, "queries": 2}
        cfg = {"model": m, "datasets": {"sqa": {**sqa, "context": context}}, "run": run}
        paths[variant] = str(tmp_path / f"{variant}.yaml")
        (tmp_path / f"{variant}.yaml").write_text(yaml.safe_dump(cfg))
    return paths


def test_end_to_end_tiny_world(tiny_world, tmp_path):
    world, _ = tiny_world
    cfg = load_tool_config("run_camml", overrides=[
        f"world={world}", f"out={tmp_path / 'out'}", "evaluation.max_samples=8", "evaluation.batch_size=8",
        "evaluation.max_new_tokens=4",
        "evaluation.runs=[base,camml,text_icl]", "evaluation.controls=[none]", "retriever.embedder={device: cpu, num_workers: 0}"])
    cfg["train_configs"] = _tiny_configs(tmp_path, world)
    # a random tiny CLIP: the test must not need the world CLIP trained outside it (a fresh clone has none)
    cfg["retriever"]["embedder"].update({"model_name": None, "pretrained": None, "model_cfg": TINY_CLIP_CFG})
    result = camml.run_camml(cfg, root=tmp_path)
    runs = result["runs"]
    assert runs["eval_base"]["num"] == 8 and runs["eval_camml"]["shots"] == 3
    # the perceiver's fixed 2 x 2 tokens against three written-out examples with their images
    assert runs["eval_text_icl"]["llm_tokens_per_sample"] > runs["eval_camml"]["llm_tokens_per_sample"] + 50
    assert "CaMML vs no-context base" in result["table"] and "| text_icl | 3 |" in result["table"]
    train_nb = json.loads((tmp_path / "out" / "neighbours" / "retrieved_train.json").read_text())["neighbours"]
    assert train_nb and all(pid not in v for pid, v in train_nb.items())


@pytest.mark.parametrize("cfg", ["camml_llava15_7b_sqa", "camml_llava15_7b_sqa_base", "camml_llava15_7b_sqa_text_icl"])
def test_real_setting_configs_fail_naming_the_missing_path(cfg):
    import train as train_entry

    with pytest.raises(SystemExit) as exit_info:
        train_entry.main(["--cfg-path", f"train_configs/{cfg}.yaml"])
    assert str(exit_info.value).startswith("error: config key 'model.llm.path'")
    assert "/path/to/vicuna-7b-v1.5" in str(exit_info.value)


def test_real_scienceqa_run_fails_naming_the_encoder_path(tmp_path):
    from mmrag.cli.run_camml import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--cfg", "eval_configs/camml_scienceqa_real.yaml", f"out={tmp_path / 'out'}"])
    assert "'path' = /path/to/clip-vit-large-patch14 is not an existing folder" in str(exit_info.value)
