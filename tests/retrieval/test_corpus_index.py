"""CorpusIndex against a brute-force oracle on random corpora (hypothesis), shards, bad input."""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from mmrag.retrieval.corpus_index import CorpusIndex, CorpusIndexError
from mmrag.retrieval.sharded_index import ShardedCorpusIndex, load_index, write_shard_manifest

VOCAB = 6  # token ids 0..5; the separator is 6
FINGERPRINT = {"name": "toy", "vocab_size": VOCAB, "vocab_sha256": "toy"}


def build(passages, out: Path, **options) -> CorpusIndex:
    ids = [f"p{i}" for i in range(len(passages))]
    return CorpusIndex.build_from_token_ids(ids, [np.array(p, dtype=np.int32) for p in passages], out,
                                            FINGERPRINT, **options)


def build_sharded(passages, out: Path, n_shards: int, **options) -> ShardedCorpusIndex:
    bounds = np.linspace(0, len(passages), n_shards + 1).astype(int)
    names = []
    for k in range(n_shards):
        names.append(f"shard_{k:03d}")
        chunk = passages[bounds[k]:bounds[k + 1]]
        CorpusIndex.build_from_token_ids([f"p{i}" for i in range(bounds[k], bounds[k + 1])],
                                         [np.array(p, dtype=np.int32) for p in chunk], out / names[-1],
                                         FINGERPRINT, allow_empty=True, **options)
    write_shard_manifest(out, names)
    return load_index(out)


def occurrences(passages, ngram):
    """(row, start) of every occurrence of ngram inside one passage."""
    m = len(ngram)
    return [(r, i) for r, p in enumerate(passages) for i in range(len(p) - m + 1) if tuple(p[i:i + m]) == tuple(ngram)]


def oracle_continuations(passages, prefix):
    m = len(prefix)
    found = Counter(passages[r][i + m] for r, i in occurrences(passages, prefix) if i + m < len(passages[r]))
    tokens = sorted(found)
    return tokens, [found[t] for t in tokens]


def queries(passages, extra):
    """Random n-grams, n-grams cut from passages and n-grams crossing passage boundaries."""
    out = [tuple(q) for q in extra] + [()]
    for r, p in enumerate(passages):
        for i in range(len(p)):
            out.append(tuple(p[i:i + 3]))
        if r + 1 < len(passages):  # the end of one passage glued to the start of the next
            out.append(tuple(p[-2:]) + tuple(passages[r + 1][:2]))
    return out


corpora = st.lists(st.lists(st.integers(0, VOCAB - 1), min_size=0, max_size=12), min_size=1, max_size=7).filter(
    lambda c: any(c))
ngrams = st.lists(st.lists(st.integers(0, VOCAB + 1), min_size=0, max_size=5), max_size=8)
tables = st.sampled_from([(1, 16), (2, 2), (1, 3), (4096, 16)])  # (frequent_min_count, max depth)


@settings(max_examples=60, deadline=None)
@given(passages=corpora, extra=ngrams, table=tables)
@example(passages=[[0, 2], [1, 2]], extra=[], table=(4096, 16))  # two tokens' ranges with equal followers
@example(passages=[[1, 2], [3, 4], [2, 3]], extra=[[2, 3, 4]], table=(1, 2))  # (2,3) also spans p0|p1
def test_queries_match_brute_force(passages, extra, table):
    with tempfile.TemporaryDirectory() as tmp:
        index = build(passages, Path(tmp), frequent_min_count=table[0], max_precomputed_depth=table[1])
        for q in queries(passages, extra):
            hits = occurrences(passages, q) if q else [(r, i) for r, p in enumerate(passages) for i in range(len(p))]
            assert index.count(q) == len(hits), q
            tokens, counts = index.continuations(q)
            assert (tokens.tolist(), counts.tolist()) == oracle_continuations(passages, q), q
            rows = sorted({r for r, _ in hits})
            assert index.passages(q, limit=3).tolist() == rows[:3], q
        assert index.occurring_tokens().tolist() == sorted({t for p in passages for t in p})


@settings(max_examples=30, deadline=None)
@given(passages=corpora, extra=ngrams)
def test_cursor_advance_equals_fresh_range(passages, extra):
    with tempfile.TemporaryDirectory() as tmp:
        index = build(passages, Path(tmp), frequent_min_count=1, max_precomputed_depth=2)
        for q in queries(passages, extra):
            cursor = index.cursor(())
            for depth, token in enumerate(q):
                cursor = cursor.advance(token) if cursor is not None else None
                fresh = index.range(q[:depth + 1])
                if cursor is None:
                    assert fresh.count == 0
                else:
                    assert (cursor.range.lo, cursor.range.hi) == (fresh.lo, fresh.hi)
                    assert cursor.tokens.tolist() == index.continuations(q[:depth + 1])[0].tolist()


@settings(max_examples=30, deadline=None)
@given(passages=corpora.filter(lambda c: len(c) >= 3), extra=ngrams, n_shards=st.integers(2, 3))
def test_sharded_answers_like_unsharded(passages, extra, n_shards):
    with tempfile.TemporaryDirectory() as tmp:
        single = build(passages, Path(tmp) / "one", frequent_min_count=1, max_precomputed_depth=3)
        sharded = build_sharded(passages, Path(tmp) / "many", n_shards, frequent_min_count=1, max_precomputed_depth=3)
        assert isinstance(sharded, ShardedCorpusIndex) and sharded.n_passages == single.n_passages
        for q in queries(passages, extra):
            assert sharded.count(q) == single.count(q)
            for a, b in zip(sharded.continuations(q), single.continuations(q)):
                assert a.tolist() == b.tolist()
            assert sharded.passages(q, limit=4).tolist() == single.passages(q, limit=4).tolist()
            c1, c2 = sharded.cursor(q), single.cursor(q)
            assert (c1 is None) == (c2 is None)
            if c1 is not None:
                assert c1.tokens.tolist() == c2.tokens.tolist() and c1.counts.tolist() == c2.counts.tolist()
        assert [sharded.passage_id(r) for r in range(len(passages))] == [f"p{i}" for i in range(len(passages))]
        assert sharded.occurring_tokens().tolist() == single.occurring_tokens().tolist()


def test_files_header_and_memory_map(tmp_path):
    index = build([[1, 2, 3], [3, 2, 1, 2]], tmp_path, frequent_min_count=1)
    header = index.header
    assert header["n_passages"] == 2 and header["n_tokens"] == 7 and header["separator_id"] == VOCAB
    assert set(header["arrays"]) >= {"tokens", "sa", "offsets", "bigram_indptr", "bigram_next", "bigram_count"}
    loaded = CorpusIndex.load(tmp_path)
    assert isinstance(loaded._a["sa"].base, np.memmap)  # memory-mapped, not read in
    assert loaded.count([1, 2]) == 2 and loaded.passage_id(1) == "p1"
    assert loaded.passage_tokens(1).tolist() == [3, 2, 1, 2]
    assert loaded.narrow(loaded.range([2]), 1).count == 1


def test_frequent_clue_locates_only_up_to_cap(tmp_path):
    build([[1, 1]] * 50, tmp_path)
    index = CorpusIndex.load(tmp_path, locate_cap=10)
    assert index.count([1]) == 100
    assert len(index.passages([1], limit=100)) <= 10


def test_empty_corpus_and_duplicate_ids_are_refused(tmp_path):
    with pytest.raises(CorpusIndexError, match="empty corpus"):
        build([], tmp_path)
    with pytest.raises(CorpusIndexError, match="empty corpus: all 2 passages tokenise to no tokens"):
        build([[], []], tmp_path)
    with pytest.raises(CorpusIndexError, match="duplicate passage id 'a' at rows 0 and 2"):
        CorpusIndex.build_from_token_ids(["a", "b", "a"], [np.array([1])] * 3, tmp_path, FINGERPRINT)
    with pytest.raises(CorpusIndexError, match="passage row 1: token id 9"):
        CorpusIndex.build_from_token_ids(["a", "b"], [np.array([1]), np.array([2, 9])], tmp_path, FINGERPRINT)


def test_corrupt_and_truncated_arrays_are_refused(tmp_path):
    build([[1, 2, 3], [3, 2, 1, 2]], tmp_path)
    sa_file = tmp_path / "sa.npy"
    data = bytearray(sa_file.read_bytes())
    data[-1] ^= 1
    sa_file.write_bytes(bytes(data))
    with pytest.raises(CorpusIndexError, match=r"sa\.npy: sha256 mismatch"):
        CorpusIndex.load(tmp_path)
    tokens_file = tmp_path / "tokens.npy"
    tokens_file.write_bytes(tokens_file.read_bytes()[:-4])
    with pytest.raises(CorpusIndexError, match=r"tokens\.npy"):
        CorpusIndex.load(tmp_path, verify_hash=False)


def test_missing_header_is_refused(tmp_path):
    with pytest.raises(CorpusIndexError, match="not a corpus index"):
        CorpusIndex.load(tmp_path)
