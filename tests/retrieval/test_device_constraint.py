"""The device-table constraint gives exactly the host path's masks, ranges and beam search results."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrag.common.errors import ConfigError
from mmrag.retrieval.constrained_decoding import CorpusConstrainedLogitsProcessor
from mmrag.retrieval.corpus_index import CorpusIndex
from mmrag.retrieval.device_constraint import DeviceCorpusConstraint, make_corpus_constraint
from mmrag.retrieval.group_beam_search import group_beam_search
from mmrag.retrieval.sharded_index import ShardedCorpusIndex

EOS = 2  # as in tests/retrieval/conftest.py


def zipf_index(tmp_path, min_count: int, depth: int = 12, vocab: int = 40, seed: int = 0) -> CorpusIndex:
    """Zipf token ids over a small vocabulary: many repeated prefixes, so with a small `min_count`
    every depth has table rows as well as window rows."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab + 1) ** 1.2
    passages = [rng.choice(vocab, size=int(rng.integers(1, 30)), p=weights / weights.sum()).astype(np.int32)
                for _ in range(120)]
    fingerprint = {"name": "zipf", "vocab_size": vocab, "vocab_sha256": "zipf"}
    return CorpusIndex.build_from_token_ids([str(i) for i in range(len(passages))], passages, tmp_path, fingerprint,
                                            frequent_min_count=min_count, max_precomputed_depth=depth)


def host_allowed(index, clues: torch.Tensor, vocab: int, min_len: int, max_len: int) -> torch.Tensor:
    proc = CorpusConstrainedLogitsProcessor(index, EOS, min_len, max_len)
    out = proc.apply(proc.prepare(clues, vocab, torch.device("cpu")), torch.zeros(clues.shape[0], vocab))
    return torch.isfinite(out)


def clue_sets(index, length: int, extra_tokens, seed: int = 0) -> torch.Tensor:
    """Every distinct corpus n-gram of `length` tokens (up to 300), then the same with the last token
    replaced by tokens that mostly leave the corpus."""
    rng = np.random.default_rng(seed + length)
    grams = set()
    for row in range(index.n_passages):
        toks = index.passage_tokens(row).tolist()
        grams.update(tuple(toks[i:i + length]) for i in range(len(toks) - length + 1))
    grams = sorted(grams)[:300]
    if length:
        grams += [g[:-1] + (int(rng.choice(extra_tokens)),) for g in grams[:100]]
    return torch.tensor(grams, dtype=torch.long).view(len(grams), length)


@pytest.mark.parametrize("min_count", [1, 3, 4096])
def test_masks_and_ranges_equal_host_path_on_zipf_corpus(tmp_path, min_count):
    index = zipf_index(tmp_path, min_count)
    vocab, min_len, max_len = 40, 2, 8
    dev = DeviceCorpusConstraint(index, EOS, min_len, max_len, device=torch.device("cpu"))
    if min_count < 4096:
        assert dev.table_rows > 10  # the table path is exercised
    for length in range(0, max_len + 2):
        clues = clue_sets(index, length, extra_tokens=[0, 5, 39, -1, 40], seed=min_count)
        if clues.shape[0] == 0:
            continue
        expected = host_allowed(index, clues.clamp(0, 39) if length == 0 else clues, vocab, min_len, max_len)
        got = dev.apply(dev.prepare(clues, vocab, torch.device("cpu")), torch.zeros(clues.shape[0], vocab))
        assert torch.equal(torch.isfinite(got), expected), f"length {length}"
        lo, hi = dev.ranges(clues)
        for row, clue in enumerate(clues.tolist()):
            count = index.count(clue) if all(0 <= t < 40 for t in clue) else 0
            assert int(hi[row] - lo[row]) == count, clue
            if count:
                assert int(lo[row]) == index.range(clue).lo


def test_model_vocab_wider_and_narrower_than_the_index(tmp_path):
    index = zipf_index(tmp_path, 3)
    dev = DeviceCorpusConstraint(index, EOS, 1, 6)
    clues = clue_sets(index, 2, extra_tokens=[1])
    for vocab in (30, 48):  # tokens >= vocab are dropped; columns past the corpus vocabulary never allowed
        expected = host_allowed(index, clues, vocab, 1, 6)
        got = torch.isfinite(dev.apply(dev.prepare(clues, vocab, torch.device("cpu")), torch.zeros(len(clues), vocab)))
        assert torch.equal(got, expected)


def test_scores_kept_exactly_where_allowed(index):
    proc = CorpusConstrainedLogitsProcessor(index, EOS, 2, 10)
    dev = DeviceCorpusConstraint(index, EOS, 2, 10)
    clue = index.passage_tokens(0)[:3]
    clues = torch.tensor([clue[:2].tolist(), [clue[0], 31000]])
    scores = torch.randn(2, 32000)
    expected = proc.apply(proc.prepare(clues, 32000, torch.device("cpu")), scores)
    assert torch.equal(dev.apply(dev.prepare(clues, 32000, torch.device("cpu")), scores), expected)


def test_advance_follows_parents_like_narrowing_from_scratch(tmp_path):
    index = zipf_index(tmp_path, 2)
    dev = DeviceCorpusConstraint(index, EOS, 1, 8)
    clues = clue_sets(index, 3, extra_tokens=[7])[:40]
    dev.start(len(clues), 40)
    gen = torch.Generator().manual_seed(0)
    current = torch.zeros(len(clues), 0, dtype=torch.long)
    for depth in range(3):
        parents = torch.randint(0, len(clues), (len(clues),), generator=gen)
        current = torch.cat([current[parents], clues[:, depth:depth + 1]], 1)
        mask = dev.advance(parents, clues[:, depth])
        assert torch.equal(mask.allowed, host_allowed(index, current, 40, 1, 8))


@pytest.mark.parametrize("make_index", ["fixture", "table"])
def test_group_beam_search_device_equals_host(index, model, tmp_path, make_index):
    if make_index == "table":  # the five passages with every repeated prefix in the tables
        rows = [(index.passage_id(r), index.passage_text(r)) for r in range(index.n_passages)]
        index = CorpusIndex.build(rows, index.tokenizer, tmp_path, progress=False, frequent_min_count=1,
                                  max_precomputed_depth=10)
        assert DeviceCorpusConstraint(index, EOS, 2, 6).table_rows > 0
    torch.manual_seed(1)
    embeds = torch.randn(3, 5, model.config.hidden_size)
    kw = dict(eos_token_id=EOS, num_beams=4, num_beam_groups=2, diversity_penalty=0.5, max_new_tokens=7)
    host = group_beam_search(model, embeds, CorpusConstrainedLogitsProcessor(index, EOS, 2, 6), **kw)
    dev = group_beam_search(model, embeds, DeviceCorpusConstraint(index, EOS, 2, 6), **kw)
    assert [[(c.tokens, c.score) for c in q] for q in dev] == [[(c.tokens, c.score) for c in q] for q in host]
    assert sum(len(q) for q in host) > 0


def test_backend_choice(index, tmp_path):
    assert isinstance(make_corpus_constraint(index, EOS, 2, 10, backend="auto"), CorpusConstrainedLogitsProcessor)
    assert isinstance(make_corpus_constraint(index, EOS, 2, 10, backend="device"), DeviceCorpusConstraint)
    assert isinstance(make_corpus_constraint(index, EOS, 2, 10, backend="host", device="cpu"),
                      CorpusConstrainedLogitsProcessor)
    with pytest.raises(ConfigError, match="constraint_backend"):
        make_corpus_constraint(index, EOS, 2, 10, backend="gpu")
    with pytest.raises(ConfigError, match="max_precomputed_depth"):
        make_corpus_constraint(index, EOS, 2, 40, backend="device")
    sharded = ShardedCorpusIndex(tmp_path, [index])
    assert isinstance(make_corpus_constraint(sharded, EOS, 2, 10, backend="auto", device="cuda"),
                      CorpusConstrainedLogitsProcessor)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_tables_give_the_host_masks(tmp_path):
    index = zipf_index(tmp_path, 3)
    dev = DeviceCorpusConstraint(index, EOS, 2, 8, device=torch.device("cuda"))
    for length in range(0, 9):
        clues = clue_sets(index, length, extra_tokens=[0, 39, 40])
        if clues.shape[0] == 0:
            continue
        expected = host_allowed(index, clues, 40, 2, 8)
        got = dev.prepare(clues.cuda(), 40, torch.device("cuda")).allowed.cpu()
        assert torch.equal(got, expected), f"length {length}"
