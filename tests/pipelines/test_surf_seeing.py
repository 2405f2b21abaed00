"""The SURf pipeline on a chosen base model (`SurfOptions.base`): with a given checkpoint the base is
not trained and every model command (answerer, SURf training, POPE rows) starts from it; SURf trains
on its own samples with the base's LoRA and the retrieval-aware chat template; the report's paired
differences match hand-worked values over the same questions."""
from __future__ import annotations

import json

import pytest

from mmrag.common.config import build_config
from mmrag.common.errors import ConfigError
from mmrag.pipelines import surf, surf_report
from mmrag.pipelines.surf import SurfOptions, surf_stages

CKPT = "ckpt/seeing/final"


def by_name(opt):
    return {s.name: s for s in surf_stages(opt)}


def overrides_of(stage):
    """The key=value words of a train.py / eval.py command."""
    return [w for w in stage.command if isinstance(w, str) and "=" in w]


def test_given_checkpoint_skips_base_training_and_every_model_starts_from_it():
    opt = SurfOptions(base="seeing_large", base_checkpoint=CKPT + "/", out="o", surf_steps=37, pope_max=0)
    stages = by_name(opt)
    assert "base_train" not in stages and not any(n.startswith("vqa_") for n in stages)
    # the image controls last: the headline rows come first when the time limit stops the run
    assert [n for n in stages if n.startswith("pope_")] == ["pope_base_none", "pope_base_rag", "pope_surf_rag",
                                                            "pope_surf_none", "pope_base_shuffled", "pope_base_blank"]
    train = stages["surf_train"]
    assert "train_configs/surf_seeing_large.yaml" in train.command
    assert {f"model.checkpoint={CKPT}", "run.output_dir=o/surf_model", "run.max_steps=37",
            "datasets.llava_instruct.data_path=o/surf_data/surf_train.json"} <= set(overrides_of(train))
    data = " ".join(stages["surf_data"].command)
    assert f"answerer.kwargs.checkpoint={CKPT} " in data
    assert "answerer.kwargs.cfg_path=train_configs/seeing_large_smollm2.yaml" in data and "database=o/db" in data
    assert "index.backend=torch" in stages["db"].command
    for name in ("pope_base_none", "pope_base_rag", "pope_base_shuffled", "pope_base_blank"):
        words = overrides_of(stages[name])
        assert f"model.checkpoint={CKPT}" in words and f"run.output_dir=o/{name}" in words
        assert not any(w.startswith("evaluation.max_samples") for w in words)  # pope_max 0: every question
    assert "evaluation.image_control=shuffled" in stages["pope_base_shuffled"].command
    for name in ("pope_surf_rag", "pope_surf_none"):
        assert "model.checkpoint=o/surf_model/final" in stages[name].command
        assert "eval_configs/surf_seeing_pope_surf.yaml" in stages[name].command
    rag = overrides_of(stages["pope_base_rag"])
    assert {"evaluation.retrieval.mode=rag", "evaluation.retrieval.database=o/db",
            "evaluation.retrieval.template=chatml_retrieval"} <= set(rag)
    assert opt.report_target(surf.REPO_ROOT) == surf.REPO_ROOT / "o" / "report.md"


def test_without_checkpoint_the_base_is_trained_into_the_output_folder():
    stages = by_name(SurfOptions(base="seeing_large", out="o", overrides=["run.max_steps=2", "run.amp='no'"]))
    train = stages["base_train"]
    assert "train_configs/seeing_large_smollm2.yaml" in train.command and "run.output_dir=o/base" in train.command
    assert train.outputs == ["o/base/final/trainable.safetensors"]
    assert "model.checkpoint=o/base/final" in stages["surf_train"].command
    assert "model.checkpoint=o/base/final" in stages["pope_base_rag"].command
    data = " ".join(stages["surf_data"].command)
    assert 'answerer.kwargs.overrides=["run.max_steps=2","run.amp=\'no\'"]' in data


def test_tiny_base_keeps_its_own_stages_and_report():
    stages = by_name(SurfOptions())
    assert stages["base_train"].outputs[0] == f"{surf.BASE_CKPT}/trainable.safetensors"
    assert "vqa_surf_rag" in stages and "pope_base_shuffled" not in stages
    assert overrides_of(stages["surf_train"]) == ["run.progress=false"]
    assert SurfOptions().report_target(surf.REPO_ROOT) == surf.REPO_ROOT / "docs" / "RESULTS_SURF.md"


def test_surf_training_config_continues_the_base_with_its_lora():
    """The SURf stage's command resolves to: the given checkpoint, the base's LoRA, the retrieval-aware
    chat template, and the SURf samples as the only data."""
    opt = SurfOptions(base="seeing_large", base_checkpoint=CKPT, out="o", surf_steps=5)
    words = overrides_of(by_name(opt)["surf_train"])
    cfg = build_config(surf.REPO_ROOT / "train_configs/surf_seeing_large.yaml", words)
    base = build_config(surf.REPO_ROOT / "train_configs/seeing_large_smollm2.yaml")
    assert cfg.model.checkpoint == CKPT and cfg.run.max_steps == 5
    assert cfg.model.lora == base.model.lora and cfg.model.lora.enabled
    assert cfg.model.llm.path == base.model.llm.path and cfg.model.vision_tower == base.model.vision_tower
    assert cfg.model.conversation_template == "chatml_retrieval"
    assert list(cfg.datasets) == ["llava_instruct"] and cfg.datasets.llava_instruct.data_path == "o/surf_data/surf_train.json"
    pope = build_config(surf.REPO_ROOT / "eval_configs/surf_seeing_pope_surf.yaml")
    assert pope.model.conversation_template == "chatml_retrieval"  # the template SURf trained with


def test_unknown_base_is_a_config_error():
    with pytest.raises(ConfigError, match="--base 'huge'"):
        SurfOptions(base="huge")


def write_answers(folder, split, correct_by_id):
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"question_id": q, "prediction": "yes", "correct": c} for q, c in correct_by_id]
    (folder / f"answers_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_paired_differences_match_hand_worked_values(tmp_path):
    out = tmp_path / "o"
    # adversarial: 4 questions. zero-shot right on 1, 2; RAG right on 1, 2, 3; SURf+RAG right on all
    write_answers(out / "pope_base_none", "adversarial", [(1, 1.0), (2, 1.0), (3, 0.0), (4, 0.0)])
    write_answers(out / "pope_base_rag", "adversarial", [(4, 0.0), (3, 1.0), (2, 1.0), (1, 1.0)])  # other order
    write_answers(out / "pope_surf_rag", "adversarial", [(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0)])
    # the shuffled control right on exactly the same questions as zero-shot, listed in another order:
    # paired, the difference is 0 on every resample, so the interval is [0, 0]
    write_answers(out / "pope_base_shuffled", "adversarial", [(3, 0.0), (1, 1.0), (4, 0.0), (2, 1.0)])
    diffs = surf_report.paired_differences(tmp_path, "o", ("shuffled",))
    surf_minus_rag = diffs["SURf+RAG minus vanilla RAG"]["adversarial"]
    assert surf_minus_rag["diff"] == pytest.approx(0.25) and surf_minus_rag["n"] == 4
    assert 0.0 <= surf_minus_rag["low"] <= 0.25 <= surf_minus_rag["high"] <= 1.0  # per-question d in {0, 1}
    rag_minus_zero = diffs["vanilla RAG minus zero-shot"]["adversarial"]
    assert rag_minus_zero["diff"] == pytest.approx(0.25)
    assert diffs["SURf+RAG minus zero-shot"]["adversarial"]["diff"] == pytest.approx(0.5)
    gain = diffs["zero-shot minus image shuffled (image gain)"]["adversarial"]
    assert (gain["diff"], gain["low"], gain["high"], gain["within_noise"]) == (0.0, 0.0, 0.0, True)
    assert "SURf no retrieval minus zero-shot" not in diffs  # its answers are missing
    assert set(diffs["SURf+RAG minus vanilla RAG"]) == {"adversarial"}
    table = surf_report.differences_table(diffs)
    assert "| zero-shot minus image shuffled (image gain) | not run | not run | +0.0 [+0.0, +0.0] within noise (n=4) |" in table


def test_all_correct_improvement_has_a_degenerate_interval(tmp_path):
    """SURf right where RAG is wrong on every question: +100 points, [+100, +100], not within noise."""
    write_answers(tmp_path / "o" / "pope_base_rag", "random", [(q, 0.0) for q in range(5)])
    write_answers(tmp_path / "o" / "pope_surf_rag", "random", [(q, 1.0) for q in range(5)])
    result = surf_report.paired_differences(tmp_path, "o")["SURf+RAG minus vanilla RAG"]["random"]
    assert result == {"diff": 1.0, "low": 1.0, "high": 1.0, "n": 5, "within_noise": False}


def test_report_outside_docs_writes_markdown_and_json(tmp_path):
    opt = SurfOptions(base="seeing_large", base_checkpoint=CKPT, out="o", controls=["shuffled"])
    write_answers(tmp_path / "o" / "pope_base_none", "popular", [(1, 1.0), (2, 0.0)])
    write_answers(tmp_path / "o" / "pope_base_rag", "popular", [(1, 1.0), (2, 1.0)])
    result = {"accuracy": 0.5, "f1": 0.4, "yes_ratio": 0.75}
    (tmp_path / "o" / "pope_base_none" / "results.json").write_text(json.dumps({"popular": result}))
    target = surf_report.write_report(tmp_path, surf_stages(opt, tmp_path), opt, opt.report_target(tmp_path))
    assert target == tmp_path / "o" / "report.md"
    text = target.read_text()
    assert "| base model, zero-shot | not run | 50.0 / 40.0 / 75.0 | not run |" in text
    assert "| base model, zero-shot, image shuffled | not run | not run | not run |" in text
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["differences"]["vanilla RAG minus zero-shot"]["popular"]["diff"] == pytest.approx(0.5)
    assert report["pope"]["pope_base_none"] == {"popular": result} and report["pope"]["pope_surf_rag"] is None
    assert report["options"]["base_checkpoint"] == CKPT


def test_val_questions_and_the_command_line():
    from mmrag.cli.run_surf import options, parse_args

    opt = options(parse_args(["--base", "seeing_large", "--base-checkpoint", CKPT, "--questions", "val",
                              "--controls", "shuffled", "--eval-batch", "256", "--surf-steps", "9"]))
    assert (opt.out, opt.base_ckpt, opt.image_controls, opt.surf_steps) == ("output/surf_seeing_large", CKPT, ("shuffled",), 9)
    stages = by_name(opt)
    for name in ("pope_base_none", "pope_base_rag", "pope_surf_rag", "pope_base_shuffled"):
        words = overrides_of(stages[name])
        assert "evaluation.question_file=dataset/world_small/pope_val/{split}.jsonl" in words
        assert "evaluation.batch_size=256" in words
    assert options(parse_args([])).out == surf.OUT and "base_train" in by_name(options(parse_args([])))
