"""run_surf.py's bookkeeping: the yes/no data is built before the base model, a forced SURf
construction drops only the model-dependent stages, and the report keeps hand-written notes."""
from __future__ import annotations

from scripts import run_surf


def test_yes_no_data_comes_before_the_base_model():
    names = [step.name for step in run_surf.steps(run_surf.parse_args([]))]
    assert names.index("yesno_data") < names.index("base_train")
    yesno = run_surf.steps(run_surf.parse_args([]))[names.index("yesno_data")]
    assert yesno.outputs == ["dataset/world_small/llava/yesno_train.json", "dataset/world_small/llava/yesno_test.json"]


def test_forced_construction_keeps_only_model_independent_stages(tmp_path, monkeypatch):
    monkeypatch.setattr(run_surf, "REPO", tmp_path)
    work = tmp_path / run_surf.OUT / "surf_data"
    work.mkdir(parents=True)
    files = ["single_turn.jsonl", "retrieved.part0of1.jsonl", "retrieved.part0of1.jsonl.done", "initial.part0of1.jsonl",
             "initial.part0of1.jsonl.done", "reanswer.part0of1.jsonl", "evaluated.part0of1.jsonl", "grouped.jsonl",
             "surf_train.json"]
    for name in files:
        (work / name).write_text("x")
    step = next(s for s in run_surf.steps(run_surf.parse_args([])) if s.name == "surf_data")
    run_surf.remove_stale(step.stale)
    assert sorted(p.name for p in work.iterdir()) == ["retrieved.part0of1.jsonl", "retrieved.part0of1.jsonl.done",
                                                      "single_turn.jsonl"]


def test_report_keeps_the_hand_written_notes(tmp_path):
    target = tmp_path / "RESULTS.md"
    assert run_surf.kept_notes(target) == [run_surf.NOTES_MARKER]
    target.write_text("old tables\n" + run_surf.NOTES_MARKER + "\n\n- my reading\n")
    assert run_surf.kept_notes(target) == [run_surf.NOTES_MARKER + "\n\n- my reading"]
