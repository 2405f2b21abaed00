"""The surf_build_data CLI end to end: a tiny real database, a fake model loaded by import string,
stages run in two chunks give the same training file as one process."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

FAKE_MODEL = '''
class Fake:
    """Says "yes" when the first image is an even-numbered picture, else "no"."""
    def answer(self, batch):
        out = []
        for req in batch:
            name = req["images"][0].rsplit("/", 1)[-1]
            out.append("yes" if int(name[2:-4]) % 2 == 0 and len(req["images"]) == 2 else "no")
        return out

def make():
    return Fake()
'''


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """8 images + captions, a LLaVA file with one question per image, a database over the images."""
    from mmrag.cli.create_index import main as create_index

    root = tmp_path_factory.mktemp("world")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    captions, llava = [], []
    for i in range(8):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / "images" / f"im{i}.jpg")
        captions.append({"image": f"images/im{i}.jpg", "caption": f"picture {i}"})
        llava.append({"id": f"s{i}", "image": f"images/im{i}.jpg", "conversations": [
            {"from": "human", "value": "<image>\nIs it a picture?"}, {"from": "gpt", "value": "yes"}]})
    (root / "image_captions.json").write_text(json.dumps(captions))
    (root / "llava.json").write_text(json.dumps(llava))
    create_index(["--world", str(root), "--out", str(root / "db"), "--no-progress", "embedder.num_workers=0"])
    (root / "fake_surf_model.py").write_text(FAKE_MODEL)
    return root


def overrides(world, work):
    return [f"llava={world / 'llava.json'}", f"image_root={world}", f"database={world / 'db'}", f"work_dir={work}",
            "k=3", "batch_size=2", "answerer.target=fake_surf_model:make", "similarity.use_minilm=false"]


def test_chunked_stages_equal_one_process(world, tmp_path, monkeypatch, capsys):
    from mmrag.cli.surf_build_data import main

    monkeypatch.syspath_prepend(str(world))
    main(["all", *overrides(world, tmp_path / "one")])
    main(["split", *overrides(world, tmp_path / "two")])
    for stage in ("retrieve", "initial", "reanswer", "evaluate"):
        for chunk in ("1/2", "0/2"):
            main([stage, "--chunk", chunk, *overrides(world, tmp_path / "two")])
    main(["group", *overrides(world, tmp_path / "two")])
    main(["select", *overrides(world, tmp_path / "two")])
    one = json.loads((tmp_path / "one" / "surf_train.json").read_text())
    two = json.loads((tmp_path / "two" / "surf_train.json").read_text())
    assert one == two and len(one) > 0
    for sample in one:
        query = f"images/im{sample['id'][1:-2]}.jpg"
        assert sample["image"][-1] == query and len(sample["image"]) == 3
        assert query not in sample["image"][:2]  # the query never retrieves itself
        labels = {r["label"]: r for r in sample["retrieval"]}
        assert int(labels["positive"]["id"][2:]) % 2 == 0 and int(labels["negative"]["id"][2:]) % 2 == 1
        assert sample["conversations"][0]["value"].endswith("</Retrieval>\n<image> Is it a picture?")


def test_missing_answerer_is_named(world, tmp_path):
    from mmrag.cli.surf_build_data import main

    main(["split", *overrides(world, tmp_path)[:-2]])
    main(["retrieve", *overrides(world, tmp_path)[:-2]])
    with pytest.raises(SystemExit, match="answerer.target"):
        main(["initial", *[o for o in overrides(world, tmp_path) if not o.startswith("answerer")]])
