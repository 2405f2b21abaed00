"""The SURf pipeline on the small-setting model that sees (`--base seeing_small`): the grounded tiny LLaMA of
train_configs/seeing_small_grounded.yaml as the base, its model keys (grounding loss, match_answer_bias) kept
through SURf training and every POPE row, RAG prompts in its own chat format with the retrieval-aware system
prompt. Oracles: the base's recipe keys and the expected commands written out by hand; the SURf step count
computed by hand from the large run's recorded budget (70 of 2,500 steps)."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

import mmrag  # noqa: F401
from mmrag.common.config import build_config
from mmrag.common.errors import ConfigError, DataFormatError
from mmrag.pipelines import surf
from mmrag.pipelines.surf import SurfOptions, surf_stages
from mmrag.processors import get_template

CKPT = "output/seeing_small_grounded/stage2_grounded/final"
GB = "dataset/world_small/annotations/instances_train.json"
# by hand, from train_configs/seeing_small_grounded.yaml: what makes the base the model that sees
BASE_MODEL_KEYS = {"grounding_loss_weight": 1.0, "grounding_head": "input", "match_answer_bias": True,
                   "match_answer_names": GB, "match_answer_gain": 10, "conversation_template": "vicuna_v1"}


def by_name(opt):
    return {s.name: s for s in surf_stages(opt)}


def overrides_of(stage):
    return [w for w in stage.command if isinstance(w, str) and "=" in w]


def model_section(path, words=()):
    return OmegaConf.to_container(build_config(str(surf.REPO_ROOT / path), list(words)).model)


def test_small_base_stages_use_its_configs_template_and_controls():
    stages = by_name(SurfOptions(base="seeing_small", base_checkpoint=CKPT, out="o", pope_max=0))
    assert "base_train" not in stages and not any(n.startswith("vqa_") for n in stages)
    assert [n for n in stages if n.startswith("pope_")] == ["pope_base_none", "pope_base_rag", "pope_surf_rag",
                                                            "pope_surf_none", "pope_base_shuffled", "pope_base_blank"]
    assert "train_configs/surf_seeing_small.yaml" in stages["surf_train"].command
    data = " ".join(stages["surf_data"].command)
    assert "answerer.kwargs.cfg_path=train_configs/seeing_small_grounded.yaml" in data
    assert f"answerer.kwargs.checkpoint={CKPT} " in data
    assert not any(w.startswith("index.backend") for w in stages["db"].command)  # faiss: create_index's default
    for name in ("pope_base_none", "pope_base_rag", "pope_base_shuffled", "pope_base_blank"):
        assert "eval_configs/surf_seeing_small_pope.yaml" in stages[name].command
        assert f"model.checkpoint={CKPT}" in stages[name].command
    for name in ("pope_surf_rag", "pope_surf_none"):
        assert "eval_configs/surf_seeing_small_pope_surf.yaml" in stages[name].command
    assert {"evaluation.retrieval.mode=rag", "evaluation.retrieval.database=o/db", "evaluation.retrieval.k=2",
            "evaluation.retrieval.template=vicuna_v1_retrieval"} <= set(overrides_of(stages["pope_base_rag"]))
    assert "evaluation.image_control=blank" in stages["pope_base_blank"].command


def test_surf_training_keeps_every_model_key_of_the_base_and_the_large_runs_relative_budget():
    words = overrides_of(by_name(SurfOptions(base="seeing_small", base_checkpoint=CKPT, out="o"))["surf_train"])
    cfg = build_config(str(surf.REPO_ROOT / "train_configs/surf_seeing_small.yaml"), words)
    model = OmegaConf.to_container(cfg.model)
    base = model_section("train_configs/seeing_small_grounded.yaml")
    # only the checkpoint, the chat template's system prompt and the longer RAG prompts differ from the base
    changed = {k for k in base.keys() | model.keys() if base.get(k) != model.get(k)}
    assert changed == {"checkpoint", "conversation_template", "max_txt_len"}
    assert model["checkpoint"] == CKPT and model["conversation_template"] == "vicuna_v1_retrieval"
    assert {k: base[k] for k in BASE_MODEL_KEYS} == BASE_MODEL_KEYS
    assert list(cfg.datasets) == ["llava_instruct"]
    assert cfg.datasets.llava_instruct.data_path == "o/surf_data/surf_train.json"
    assert cfg.datasets.llava_instruct.grounding_boxes == GB  # the grounding loss keeps a target
    assert cfg.run.max_steps == 34 and cfg.run.batch_size == 16  # round(1,200 x 70 / 2,500) = round(33.6)
    # the SURf model is evaluated with the model keys it trained with; the base rows with the base's own
    surf_pope = model_section("eval_configs/surf_seeing_small_pope_surf.yaml")
    assert {k: v for k, v in surf_pope.items() if k != "checkpoint"} == {k: v for k, v in model.items() if k != "checkpoint"}
    base_pope = model_section("eval_configs/surf_seeing_small_pope.yaml")
    assert {k: v for k, v in base_pope.items() if k != "checkpoint"} == {k: v for k, v in base.items() if k != "checkpoint"}


def test_retrieval_template_renders_answers_as_the_base_learned_them():
    """match_answer_bias reads its yes / no ids from the template's answer form and ends a turn at the EOS
    after an answer: the retrieval variant must keep vicuna_v1's turns (hand-copied strings) and its EOS."""
    plain, rag = get_template("vicuna_v1"), get_template("vicuna_v1_retrieval")
    assert (rag.user, rag.assistant_prefix, rag.answer, rag.turn_separator) == ("USER: {content} ", "ASSISTANT:", " {content}", "")
    assert (plain.user, plain.assistant_prefix, plain.answer) == (rag.user, rag.assistant_prefix, rag.answer)
    assert rag.eos_after_answer and rag.system != plain.system


def test_surf_samples_with_an_image_outside_the_training_boxes_are_refused(tmp_path):
    """The grounding targets of a SURf sample cover every image in it; an image without boxes in the
    instances file (a test image) is refused rather than trained without targets. A hand-built world of
    two images, one of them boxed, stands in for the generated one (absent from a fresh clone)."""
    from mmrag.datasets.builders import LlavaInstructBuilder
    from mmrag.models.multimodal_llm import MultimodalLLM
    from mmrag.processors import build_processor

    (tmp_path / "images").mkdir()
    for name in ("boxed.jpg", "unboxed.jpg"):
        (tmp_path / "images" / name).write_bytes(b"x")
    instances = {"images": [{"id": 1, "file_name": "boxed.jpg", "width": 96, "height": 96}],
                 "categories": [{"id": 1, "name": "tree"}],
                 "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 48, 48]}]}
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    sample = {"id": "q1", "image": ["images/boxed.jpg", "images/unboxed.jpg"],
              "conversations": [{"from": "human", "value": "<Retrieval> 1. <image> a caption\n</Retrieval>\n<image> Is there a tree?"},
                                {"from": "gpt", "value": "No"}]}
    (tmp_path / "surf_train.json").write_text(json.dumps([sample]))
    cfg = build_config(str(surf.REPO_ROOT / "train_configs/surf_seeing_small.yaml"),
                       [f"datasets.llava_instruct.data_path={tmp_path}/surf_train.json",
                        f"datasets.llava_instruct.image_root={tmp_path}",
                        f"datasets.llava_instruct.grounding_boxes={tmp_path}/instances.json",
                        f"model.match_answer_names={tmp_path}/instances.json", "model.checkpoint=null",
                        "model.vision_tower.path=null"])
    processor = build_processor(cfg.model, MultimodalLLM(cfg.model))
    with pytest.raises(DataFormatError, match="unboxed.jpg"):
        LlavaInstructBuilder.build(cfg.datasets.llava_instruct, processor, "train", "llava_instruct")
    # the config itself points SURf's samples at the world's training boxes
    assert build_config(str(surf.REPO_ROOT / "train_configs/surf_seeing_small.yaml"), []).datasets.llava_instruct.grounding_boxes == GB


def test_unknown_base_lists_the_small_one():
    with pytest.raises(ConfigError, match="seeing_small"):
        SurfOptions(base="seeing_smal")
