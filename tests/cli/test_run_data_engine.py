"""mmrag-run-data-engine: runs the stages it is asked for, prints the report, and refuses bad keys in one line."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmrag.cli import run_data_engine

REPO = Path(__file__).resolve().parents[2]
LOOP = str(REPO / "train_configs" / "dataengine_tiny_loop.yaml")


def test_only_the_benchmark_stage(tmp_path, capsys):
    from mmrag.datasets.world import generate_world

    world = tmp_path / "world"
    generate_world("tiny", 0, world, progress=False)
    assert run_data_engine.main(["--cfg", LOOP, f"world={world}", f"out={tmp_path / 'out'}", "--only", "benchmark"]) == 0
    counts = json.loads((world / "dataengine" / "counts.json").read_text())
    assert counts["test"]["items"] == sum(counts["test"]["by_qtype"].values()) > 0
    assert "(no finished round yet)" in capsys.readouterr().out
    assert not (tmp_path / "out" / "round_0").exists()


@pytest.mark.parametrize("override,words", [("arms=[targeted,random]", "arms ['random'] unknown"),
                                            ("eval_view=letters", "eval_view"), ("budgett=3", "budget")])
def test_bad_config_is_one_line(override, words, tmp_path):
    with pytest.raises(SystemExit) as info:
        run_data_engine.main(["--cfg", LOOP, f"out={tmp_path}", override])
    assert str(info.value).startswith("error:") and words in str(info.value)
