"""The crop oracle on a hand-drawn world whose crops are known: two distinct looks and a twin."""
import json

import numpy as np
from PIL import Image

from mmrag.cli.crop_oracle import main
from mmrag.pipelines.crop_oracle import CROP_ORACLE, load_crops, nearest_centroid, ridge, run_crop_oracle

COLOURS = {"redling": (220, 30, 30), "blueling": (30, 30, 220), "twinling": (220, 30, 30)}  # twin looks like red
BOX = [4, 4, 8, 8]


def _world(root, per_split=(("train", 3), ("test", 2))):
    """Each image: white 16 px, one entity filling BOX with its colour."""
    cats = [{"id": i + 1, "name": n, "supercategory": "creature"} for i, n in enumerate(COLOURS)]
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    image_id = 0
    for split, n in per_split:
        images, anns = [], []
        for cat in cats:
            for _ in range(n):
                image_id += 1
                im = Image.new("RGB", (16, 16), (255, 255, 255))
                im.paste(COLOURS[cat["name"]], (4, 4, 12, 12))
                im.save(root / "images" / f"{image_id}.png")
                images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 16, "height": 16})
                anns.append({"id": image_id, "image_id": image_id, "category_id": cat["id"], "bbox": BOX,
                             "area": 64, "iscrowd": 0})
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def test_crops_are_the_boxes_contents(tmp_path):
    world = _world(tmp_path / "w")
    crops, names, is_entity = load_crops(world, "train", [4, 2], progress=False)
    assert names == ["redling"] * 3 + ["blueling"] * 3 + ["twinling"] * 3 and all(is_entity)
    assert crops[4].shape == (9, 48) and crops[2].shape == (9, 12)
    expected = np.tile(np.array(COLOURS["blueling"]) / 255.0, 4)  # 2x2 pixels of solid blue
    np.testing.assert_allclose(crops[2][3], expected, atol=1 / 255)


def test_nearest_centroid_and_ridge_on_hand_made_points():
    train_x = np.array([[0.0, 0.0], [0.0, 0.2], [1.0, 1.0], [1.0, 0.8]])
    train_y = np.array([0, 0, 1, 1])
    test_x = np.array([[0.1, 0.0], [0.9, 1.0], [0.4, 0.4]])  # centroids (0, .1) and (1, .9)
    assert nearest_centroid(train_x, train_y, 3, test_x).tolist() == [0, 1, 0]
    assert nearest_centroid(train_x, train_y, 3, test_x).max() < 2  # a class without train crops is never chosen
    # least squares on 4 points: x=0 -> class 0, x=1 -> class 1 is fitted exactly with a tiny ridge
    pred, strength = ridge(train_x, train_y, 2, test_x[:2], [1e-6], 0.25, 0)
    assert pred.tolist() == [0, 1] and strength == 1e-6


def test_report_finds_the_twin_and_only_the_twin(tmp_path):
    world = _world(tmp_path / "w")
    report = run_crop_oracle({**CROP_ORACLE, "world": str(world), "sizes": [4], "classifiers": ["nearest_centroid"],
                              "progress": False})
    result = report["results"]["4px/nearest_centroid"]
    per_entity = {w["name"]: w["accuracy"] for w in result["worst"]}
    assert per_entity["blueling"] == 1.0
    assert per_entity["redling"] + per_entity["twinling"] == 1.0  # identical looks: one wins every crop
    assert result["entities_below_50"] == 1 and result["entities_tested"] == 3
    assert abs(result["accuracy"] - 4 / 6) < 1e-9
    assert json.loads((world / "crop_oracle.json").read_text())["results"]["4px/nearest_centroid"]["accuracy"] == result["accuracy"]


def test_cli_writes_the_report(tmp_path, capsys):
    world = _world(tmp_path / "w")
    out = tmp_path / "r.json"
    assert main(["--world", str(world), "--out", str(out), "--quiet", "sizes=[4,2]"]) == 0
    assert set(json.loads(out.read_text())["results"]) == {"4px/nearest_centroid", "4px/ridge", "2px/nearest_centroid", "2px/ridge"}
    assert "| 4 px | ridge |" in capsys.readouterr().out
