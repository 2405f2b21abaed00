"""CaMML's context retriever: self-exclusion at training time against a brute-force search, the
encoder fingerprint check, the neighbours cache and the one-neighbour-is-itself error."""
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from mmrag.common.errors import UserError
from mmrag.datasets.scienceqa import question_text, read_scienceqa
from mmrag.retrieval.clip_embedder import embedder_config
from mmrag.retrievers.context_examples import ContextExampleRetriever, EncoderMismatchError


def _vec(key, seed, dim=16):
    rng = np.random.default_rng(int(hashlib.md5(f"{seed}:{key}".encode()).hexdigest()[:8], 16))
    v = rng.normal(size=dim)
    return v / np.linalg.norm(v)


class FakeEmbedder:
    """Text -> a seeded random unit vector; an image -> the vector of its problem's question text
    plus a little noise, so a problem's own image is its text's nearest row (self-retrieval is real)."""

    def __init__(self, text_of_image, seed=0):
        self.cfg, self.seed, self.text_of_image, self.calls = embedder_config({"seed": seed}), seed, text_of_image, 0

    def encode_texts(self, texts):
        self.calls += 1
        return np.stack([_vec(t, self.seed) for t in texts]).astype(np.float32)

    def encode_images(self, paths):
        self.calls += 1
        out = [_vec(self.text_of_image[str(p)], self.seed) + 0.05 * _vec(str(p), self.seed + 1) for p in paths]
        return np.stack([v / np.linalg.norm(v) for v in out]).astype(np.float32)


def make_sqa(root, n_train=12, n_test=3, image_every=1):
    problems, splits = {}, {"train": [], "test": []}
    for n in range(n_train + n_test):
        split = "train" if n < n_train else "test"
        pid = str(100 + n)
        has_image = n % image_every == 0
        problems[pid] = {"question": f"Question number {n}?", "choices": ["a", "b", "c"], "answer": n % 3,
                         "hint": "", "image": "image.png" if has_image else None, "lecture": "", "solution": ""}
        splits[split].append(pid)
        if has_image:
            (root / "images" / split / pid).mkdir(parents=True)
            Image.new("RGB", (4, 4), (n, 0, 0)).save(root / "images" / split / pid / "image.png")
    (root / "problems.json").write_text(json.dumps(problems))
    (root / "pid_splits.json").write_text(json.dumps(splits))
    items = read_scienceqa(root, "train") + read_scienceqa(root, "test")
    return {it["image"]: question_text(it) for it in items if it["image"]}


def _retriever(tmp_path, seed=0, **cfg):
    text_of_image = make_sqa(tmp_path / "sqa") if not (tmp_path / "sqa").exists() else _images(tmp_path / "sqa")
    emb = FakeEmbedder(text_of_image, seed)
    base = {"database": str(tmp_path / "db"), "data_path": str(tmp_path / "sqa"), "k_train": 4, "k_eval": 2}
    return ContextExampleRetriever({**base, **cfg}, emb), emb


def _images(root):
    items = read_scienceqa(root, "train") + read_scienceqa(root, "test")
    return {it["image"]: question_text(it) for it in items if it["image"]}


def brute_force(emb, items, rows, k, exclude_self):
    q = emb.encode_texts([question_text(it) for it in items])
    r = emb.encode_images([row["image"] for row in rows])
    out = {}
    for it, scores in zip(items, q @ r.T):
        order = [rows[j]["id"] for j in np.argsort(-scores, kind="stable")]
        out[it["id"]] = [i for i in order if not (exclude_self and i == it["id"])][:k]
    return out


def test_train_neighbours_never_self_and_match_brute_force(tmp_path):
    ret, emb = _retriever(tmp_path)
    train = read_scienceqa(tmp_path / "sqa", "train")
    data = ret.write_neighbours("train", tmp_path / "nb_train.json")
    assert data["k"] == 4 and data["exclude"] == "self"
    expected = brute_force(emb, train, train, 4, exclude_self=True)
    assert data["neighbours"] == expected
    assert all(pid not in nbs for pid, nbs in data["neighbours"].items())
    # without exclusion the fake makes every problem its own nearest example: exclusion is what removes it
    assert all(v[0] == pid for pid, v in brute_force(emb, train, train, 1, exclude_self=False).items())
    test = ret.write_neighbours("test", tmp_path / "nb_test.json")
    assert test["k"] == 2 and test["neighbours"] == brute_force(emb, read_scienceqa(tmp_path / "sqa", "test"), train, 2, False)


def test_neighbours_cached_and_encoder_fingerprint_checked(tmp_path):
    ret, emb = _retriever(tmp_path)
    first = ret.write_neighbours("train", tmp_path / "nb.json")
    calls = emb.calls
    assert ret.write_neighbours("train", tmp_path / "nb.json") == first and emb.calls == calls  # reused
    ContextExampleRetriever(dict(ret.cfg), FakeEmbedder(emb.text_of_image, 0))  # same encoder: reopens
    with pytest.raises(EncoderMismatchError, match="manifest.json: context database built with encoder"):
        _retriever(tmp_path, seed=1)


def test_only_neighbour_is_itself(tmp_path):
    (tmp_path / "sqa").mkdir()
    make_sqa(tmp_path / "sqa", n_train=3, n_test=1, image_every=3)  # one training image: problem 100's
    ret, _ = _retriever(tmp_path)
    with pytest.raises(UserError, match="problem 100 \\(train\\) has no neighbour but itself"):
        ret.write_neighbours("train", tmp_path / "nb.json")
