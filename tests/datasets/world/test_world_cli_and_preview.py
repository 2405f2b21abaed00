"""The make_world command line and the README picture."""
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mmrag.cli import make_world
from mmrag.datasets.world.preview import render_preview

REPO = Path(__file__).resolve().parents[3]


def test_make_world_writes_a_world_and_refuses_a_different_one(tmp_path, capsys):
    out = tmp_path / "world_tiny"
    assert make_world.main(["--preset", "tiny", "--seed", "4", "--out", str(out), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == 60 and summary["seed"] == 4 and summary["seconds"] > 0
    assert make_world.main(["--preset", "tiny", "--seed", "5", "--out", str(out), "--quiet"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert json.loads((out / "world.json").read_text())["seed"] == 4
    assert make_world.main(["--preset", "tiny", "--seed", "5", "--out", str(out), "--quiet", "--force"]) == 0
    assert json.loads((out / "world.json").read_text())["seed"] == 5


def test_preview_draws_images_boxes_and_a_question(tiny_world, tmp_path):
    world, _ = tiny_world
    png = render_preview(world, tmp_path / "docs" / "preview.png", n_images=3)
    image = Image.open(png)
    assert image.format == "PNG" and image.size[0] > 600 and image.size[1] > 300
    assert len(np.unique(np.asarray(image.convert("L")))) > 50  # an actual picture, not a blank page
