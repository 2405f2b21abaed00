import numpy as np
import pytest
from transformers import AutoTokenizer

from mmrag.common.assets import llama_tokenizer_dir
from mmrag.datasets.clue_sampler import ClueSamplerConfig, sample_clues, word_start_table
from mmrag.retrieval.corpus_index import CorpusIndex

PASSAGES = [
    ("p0", "The zorvik beetle eats amber moss and lives in the northern caves of Talvor."),
    ("p1", "The common beetle eats leaves and lives in the forest."),
    ("p2", "Many beetles eat leaves, and many live in the forest or in caves."),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tok = AutoTokenizer.from_pretrained(str(llama_tokenizer_dir()))
    index = CorpusIndex.build(PASSAGES, tok, tmp_path_factory.mktemp("idx"), progress=False)
    return tok, index, word_start_table(tok)


def _contains(seq, sub):
    return any(seq[i:i + len(sub)] == sub for i in range(len(seq) - len(sub) + 1))


def test_clues_are_word_aligned_spans_of_the_gold_passage(setup):
    tok, index, starts = setup
    gold = index.passage_tokens(0).tolist()
    q = tok("What does the beetle on the left eat?", add_special_tokens=False)["input_ids"]
    clues = sample_clues(index, np.array(gold), q, "q1", starts, ClueSamplerConfig(num_clues=4, clue_len=5))
    assert len(clues) == 4 and len({tuple(c) for c in clues}) == 4
    for clue in clues:
        assert _contains(gold, clue) and starts[clue[0]]
        assert index.count(clue) >= 1


def test_deterministic_by_seed_and_key(setup):
    tok, index, starts = setup
    gold = index.passage_tokens(0)
    cfg = ClueSamplerConfig(num_clues=3, clue_len=4, temperature=5.0)
    a = sample_clues(index, gold, [], "q1", starts, cfg)
    assert a == sample_clues(index, gold, [], "q1", starts, cfg)
    others = {tuple(map(tuple, sample_clues(index, gold, [], "q1", starts, ClueSamplerConfig(
        num_clues=3, clue_len=4, temperature=5.0, seed=s)))) for s in range(8)}
    assert len(others) > 1  # the seed matters


def test_rare_spans_are_preferred(setup):
    tok, index, starts = setup
    gold = index.passage_tokens(0)
    cfg = ClueSamplerConfig(num_clues=1, clue_len=3, temperature=1e-3, overlap_weight=0.0)
    clue = sample_clues(index, gold, [], "q", starts, cfg)[0]
    assert index.count(clue) == 1  # the rarest start: a span found in this passage only
    assert tok.decode(clue).split()[0] not in ("The", "and", "in")


def test_spans_holding_the_answer_are_preferred(setup):
    tok, index, starts = setup
    gold = index.passage_tokens(0)
    answer = tok("amber moss", add_special_tokens=False)["input_ids"]
    cfg = ClueSamplerConfig(num_clues=1, clue_len=4, temperature=1e-3, rarity_weight=0.0, overlap_weight=0.0,
                            answer_weight=1.0)
    clue = sample_clues(index, gold, [], "q", starts, cfg, answers=[answer])[0]
    assert _contains(clue, answer)
