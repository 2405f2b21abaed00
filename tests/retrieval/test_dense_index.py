"""Dense index: self-exclusion on a hand-built index, sharded == unsharded == brute force, resumable
embedding shards give the same vectors, and the create_index CLI end to end on a tiny collection."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mmrag.retrieval.clip_embedder import ClipEmbedder
from mmrag.retrieval.dense_index import (
    DenseIndex,
    DenseIndexError,
    build_database,
    embed_to_shards,
    load_collection,
)
from mmrag.retrieval.exact_search import merge_shard_results


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def items_for(n, prefix="img"):
    return [{"id": f"{prefix}{i}", "image": f"images/{prefix}{i}.jpg", "caption": f"caption {i}"} for i in range(n)]


@pytest.fixture
def hand_index(tmp_path):
    """5 rows in 3-d: 'a' and 'a_copy' are the same vector; b is close to a; c, d far away."""
    vecs = unit([[1, 0, 0], [1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1]])
    items = [{"id": i, "image": f"images/{i}.jpg", "caption": f"cap {i}"} for i in ["a", "a_copy", "b", "c", "d"]]
    build_database(tmp_path / "db", vecs, items, progress=False)
    return DenseIndex.load(tmp_path / "db"), vecs


def test_self_exclusion_drops_same_id_and_near_identical_vector(hand_index):
    index, vecs = hand_index
    res = index.search_by_image(vecs[:1], k=2, query_ids=["a"])
    assert res.ids == [["b", "c"]]  # 'a' (same id) and 'a_copy' (cosine 1.0) are both dropped
    assert res.scores[0][0] == pytest.approx(float(vecs[0] @ vecs[2]), abs=1e-6)
    assert res.metadata[0][0]["caption"] == "cap b"


def test_without_exclusion_the_query_comes_first(hand_index):
    index, vecs = hand_index
    res = index.search_by_image(vecs[2:3], k=3, exclude_self=False)
    assert res.ids == [["b", "a", "a_copy"]]
    res = index.search_by_image(vecs[2:3], k=3, query_ids=["b"])
    assert res.ids == [["a", "a_copy", "c"]]  # b excluded by id; a/a_copy are not near-identical to b


def test_exclusion_keeps_k_results_when_many_duplicates(tmp_path):
    vecs = unit([[1, 0]] * 6 + [[0.8, 0.6], [0.6, 0.8], [0, 1]])
    build_database(tmp_path / "db", vecs, items_for(9), progress=False)
    res = DenseIndex.load(tmp_path / "db").search_by_image(vecs[:1], k=3, query_ids=["img0"])
    assert res.ids == [["img6", "img7", "img8"]]  # all six copies of the query skipped, still k hits


@pytest.mark.parametrize("shard_rows", [37, 50, 1])
def test_sharded_equals_unsharded_equals_brute_force(tmp_path, shard_rows):
    rng = np.random.default_rng(0)
    vecs, queries = unit(rng.normal(size=(150, 16))), unit(rng.normal(size=(12, 16)))
    build_database(tmp_path / "one", vecs, items_for(150), progress=False)
    build_database(tmp_path / "many", vecs, items_for(150), {"shard_rows": shard_rows}, progress=False)
    one, many = DenseIndex.load(tmp_path / "one"), DenseIndex.load(tmp_path / "many")
    assert len(many.shards) == -(-150 // shard_rows)
    a, b = one.search(queries, 10), many.search(queries, 10)
    oracle = np.argsort(-(queries @ vecs.T), axis=1)[:, :10]
    assert a.ids == b.ids == [[f"img{r}" for r in row] for row in oracle]
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


def test_merge_shard_results_breaks_ties_by_row():
    scores, rows = merge_shard_results([(np.array([[0.5, 0.1]]), np.array([[7, 8]])), (np.array([[0.5, -1.0]]), np.array([[2, -1]]))], 3)
    assert rows.tolist() == [[2, 7, 8]] and scores.tolist() == [[0.5, 0.5, 0.1]]


@pytest.mark.parametrize("spec", [{"type": "ivf", "nlist": 8, "nprobe": 8}, {"type": "hnsw", "hnsw_m": 16, "ef_search": 200}])
def test_approximate_indexes_match_exact_when_searching_exhaustively(tmp_path, spec):
    rng = np.random.default_rng(1)
    vecs, queries = unit(rng.normal(size=(300, 8))), unit(rng.normal(size=(5, 8)))
    build_database(tmp_path / "db", vecs, items_for(300), spec, progress=False)
    got = DenseIndex.load(tmp_path / "db").search(queries, 5).ids
    oracle = np.argsort(-(queries @ vecs.T), axis=1)[:, :5]
    assert got == [[f"img{r}" for r in row] for row in oracle]


def test_pq_index_builds_and_finds_the_query_itself(tmp_path):
    rng = np.random.default_rng(2)
    vecs = unit(rng.normal(size=(256, 16)))
    build_database(tmp_path / "db", vecs, items_for(256), {"type": "pq", "pq_m": 8, "pq_nbits": 4}, progress=False)
    got = DenseIndex.load(tmp_path / "db").search(vecs[:20], 1).ids
    assert sum(g == [f"img{i}"] for i, g in enumerate(got)) >= 15  # lossy codes: most find themselves


def test_unknown_index_key_is_an_error(tmp_path):
    with pytest.raises(DenseIndexError, match="unknown key 'nprobes'"):
        build_database(tmp_path / "db", unit([[1, 0]]), items_for(1), {"nprobes": 4}, progress=False)


# ----------------------------------------------------------------------------- embedding + CLI
def write_world(root, n=10):
    """n small images with distinct colours + image_captions.json, in the world layout."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    entries = []
    for i in range(n):
        pixels = (rng.random((40, 48, 3)) * 80 + rng.integers(0, 170, size=3)).astype(np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"im{i}.jpg")
        entries.append({"image": f"images/im{i}.jpg", "caption": f"picture number {i}"})
    (root / "image_captions.json").write_text(json.dumps(entries))
    return load_collection(root / "image_captions.json")


class CountingEmbedder:
    """Wraps a ClipEmbedder and counts the images it was asked to embed."""

    def __init__(self, inner):
        self.inner, self.cfg, self.calls = inner, inner.cfg, 0

    def encode_images(self, paths):
        self.calls += len(paths)
        return self.inner.encode_images(paths)


class StreamCountingEmbedder(CountingEmbedder):
    """Also counts the loader passes (`image_batches` calls) and the images each one was given."""

    def __init__(self, inner):
        super().__init__(inner)
        self.passes = []

    def image_batches(self, paths, positions=None):
        self.passes.append(len(paths))
        return self.inner.image_batches(paths, positions=positions)


def test_whole_batch_shards_share_one_loader_and_give_the_per_shard_vectors(tmp_path):
    """shard_size a multiple of batch_size: one loader pass over every pending shard (workers start once),
    with the vectors of one pass per shard (the oracle: encode_images on each shard's images alone)."""
    items = write_world(tmp_path / "w", 10)
    inner = ClipEmbedder({"batch_size": 2, "num_workers": 0})
    paths = [tmp_path / "w" / it["image"] for it in items]
    oracle = np.concatenate([inner.encode_images(paths[s:s + 4]) for s in range(0, 10, 4)])
    first = StreamCountingEmbedder(inner)
    assert embed_to_shards(first, items, tmp_path / "e", image_root=tmp_path / "w", shard_size=4,
                           stop_after_shards=1, progress=False) is None
    assert first.passes == [10] and first.calls == 0       # one pass opened over all three shards, no per-shard call
    second = StreamCountingEmbedder(inner)
    vectors = embed_to_shards(second, items, tmp_path / "e", image_root=tmp_path / "w", shard_size=4, progress=False)
    assert second.passes == [6]                            # shards 1 (4 images) and 2 (2 images) only
    np.testing.assert_array_equal(vectors, oracle)


def test_resumed_embedding_equals_uninterrupted(tmp_path):
    items = write_world(tmp_path / "w", 10)
    embedder = ClipEmbedder({"batch_size": 2, "num_workers": 0})
    full = embed_to_shards(embedder, items, tmp_path / "full", image_root=tmp_path / "w", shard_size=3, progress=False)
    stopped = embed_to_shards(embedder, items, tmp_path / "resumed", image_root=tmp_path / "w", shard_size=3,
                              stop_after_shards=2, progress=False)
    assert stopped is None and sorted(p.name for p in (tmp_path / "resumed").glob("shard_*.npy")) == ["shard_00000.npy", "shard_00001.npy"]
    counting = CountingEmbedder(ClipEmbedder({"batch_size": 2, "num_workers": 0}))  # a fresh process would do this
    resumed = embed_to_shards(counting, items, tmp_path / "resumed", image_root=tmp_path / "w", shard_size=3, progress=False)
    assert counting.calls == 4  # only shards 2 (3 images) and 3 (1 image) were embedded again
    assert full.shape == (10, 64) and np.array_equal(full, resumed)


@pytest.mark.parametrize("shard_size", [2, 3])  # whole batches of 2: one loader pass; else one pass per shard
def test_pil_share_decodes_the_same_files_into_the_same_vectors_under_two_processes(tmp_path, monkeypatch, shard_size):
    """decode torchvision_cpu with cpu_decode_share 0.4: the files PIL decodes and every vector are the
    same when two ranks split the shards (round-robin) as when one process embeds them all."""
    from pathlib import Path

    from mmrag.retrieval import image_pipeline

    items = write_world(tmp_path / "w", 10)
    seen = []
    real_open = image_pipeline.open_rgb
    monkeypatch.setattr(image_pipeline, "open_rgb", lambda path: seen.append(Path(path).stem) or real_open(path))
    embedder = ClipEmbedder({"batch_size": 2, "num_workers": 0, "decode": "torchvision_cpu", "cpu_decode_share": 0.4})
    one = embed_to_shards(embedder, items, tmp_path / "one", image_root=tmp_path / "w", shard_size=shard_size,
                          progress=False)
    # hand-worked: file p goes to PIL when 0.4 * (p + 1) passes a whole number that 0.4 * p had not
    assert sorted(seen) == ["im2", "im4", "im7", "im9"]
    seen.clear()
    for rank in (1, 0):  # rank 0 last: it reads every shard back
        two = embed_to_shards(embedder, items, tmp_path / "two", image_root=tmp_path / "w", shard_size=shard_size,
                              progress=False, rank=rank, world_size=2)
    assert sorted(seen) == ["im2", "im4", "im7", "im9"]
    np.testing.assert_array_equal(two, one)
    # the two decoders' vectors of one image differ, so a file decoded the other way would show above
    image = [tmp_path / "w" / items[6]["image"]]
    assert not np.array_equal(embedder.encode_images(image, decode="cpu"), embedder.encode_images(image))


def test_resume_with_another_config_is_refused(tmp_path):
    items = write_world(tmp_path / "w", 4)
    embed_to_shards(ClipEmbedder({"num_workers": 0}), items, tmp_path / "e", image_root=tmp_path / "w", shard_size=2,
                    stop_after_shards=1, progress=False)
    with pytest.raises(DenseIndexError, match="another embedder config"):
        embed_to_shards(ClipEmbedder({"num_workers": 0, "seed": 1}), items, tmp_path / "e", image_root=tmp_path / "w",
                        shard_size=2, progress=False)


def test_create_index_cli_builds_a_searchable_database(tmp_path):
    from mmrag.cli.create_index import main

    write_world(tmp_path / "w", 8)
    out = tmp_path / "db"
    assert main(["--world", str(tmp_path / "w"), "--out", str(out), "--no-progress",
                 "shard_size=3", "index.shard_rows=5", "embedder.num_workers=0"]) == 0
    index = DenseIndex.load(out)
    assert len(index) == 8 and len(index.shards) == 2
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"im{i}" for i in range(8)] and rows[3]["caption"] == "picture number 3"
    query = tmp_path / "w" / "images" / "im3.jpg"
    hits = index.search_by_image([query], k=3).hits[0]
    assert len(hits) == 3 and "im3" not in [h.id for h in hits]  # found by path -> excluded by id
    assert index.search_by_image([query], k=1, exclude_self=False).ids == [["im3"]]
    stored = np.load(out / "embeddings" / "shard_00001.npy")
    np.testing.assert_allclose(index.embedder.encode_images([tmp_path / "w" / "images" / "im3.jpg"])[0], stored[0], atol=1e-6)
    assert len(index.search_by_text(["picture number 2"], k=4).ids[0]) == 4


def test_two_processes_embed_the_same_vectors_as_one_and_resume_across_process_counts(tmp_path):
    """torchrun with 2 CPU processes (gloo): each embeds its own shards, rank 0 writes the index; the
    vectors equal a one-process run's, and a run half done by one process is finished by two."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from mmrag.cli.create_index import main

    write_world(tmp_path / "w", 14)
    common = ["--world", str(tmp_path / "w"), "--no-progress", "shard_size=3", "embedder.num_workers=0",
              "embedder.device=cpu"]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    one = np.load(tmp_path / "one" / "embeddings" / "shard_00004.npy")

    def torchrun(out):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "mmrag.cli.create_index", *common, "--out", str(out)],
                       check=True, env=env, timeout=300, cwd=Path(__file__).resolve().parents[2])

    torchrun(tmp_path / "two")
    for name in ("embeddings/shard_00000.npy", "embeddings/shard_00003.npy", "embeddings/shard_00004.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "two" / name), np.load(tmp_path / "one" / name))
    a, b = DenseIndex.load(tmp_path / "one"), DenseIndex.load(tmp_path / "two")
    queries = unit(np.random.default_rng(1).normal(size=(3, one.shape[1])))
    assert a.search(queries, 5).ids == b.search(queries, 5).ids

    # interrupted after 2 of 5 shards by one process, finished by two: the same vectors
    from mmrag.retrieval.dense_index import embed_to_shards

    items = load_collection(tmp_path / "w" / "image_captions.json")
    embedder = ClipEmbedder({**DenseIndex.load(tmp_path / "one").manifest["embedder"], "device": "cpu"})
    assert embed_to_shards(embedder, items, tmp_path / "half" / "embeddings", image_root=tmp_path / "w",
                           shard_size=3, stop_after_shards=2, progress=False) is None
    torchrun(tmp_path / "half")
    np.testing.assert_array_equal(np.load(tmp_path / "half" / "embeddings" / "shard_00004.npy"), one)
    assert len(DenseIndex.load(tmp_path / "half")) == 14
