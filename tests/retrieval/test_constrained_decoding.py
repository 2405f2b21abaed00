"""Corpus-constrained decoding with a tiny random LLaMA: every clue must occur in the corpus."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList

from mmrag.retrieval.clue_scoring import Clue
from mmrag.retrieval.constrained_decoding import CorpusConstrainedLogitsProcessor, clues_from_sequences
from mmrag.retrieval.group_beam_search import group_beam_search

EOS, PAD = 2, 0  # as in tests/retrieval/conftest.py, which builds the `index` and `model` fixtures


def prompts(n: int = 3):
    torch.manual_seed(1)
    return torch.randn(n, 6, 32), torch.ones(n, 6, dtype=torch.long)


def generate(model, processors, **kwargs):
    embeds, mask = prompts()
    out = model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=11, do_sample=False,
                         logits_processor=LogitsProcessorList(processors), eos_token_id=EOS, pad_token_id=PAD,
                         return_dict_in_generate=True, output_scores=True, **kwargs)
    scores = getattr(out, "sequences_scores", None)
    return clues_from_sequences(out.sequences, scores, EOS, PAD)


def occurring_share(index, clues) -> float:
    return float(np.mean([len(c.tokens) > 0 and index.count(c.tokens) > 0 for c in clues]))


@pytest.mark.parametrize("beams", [1, 4])
def test_constrained_clues_all_occur_and_unconstrained_mostly_not(index, model, beams):
    kwargs = dict(num_beams=beams, num_return_sequences=beams) if beams > 1 else {}
    constrained = generate(model, [CorpusConstrainedLogitsProcessor(index, EOS, min_clue_len=2, max_clue_len=6)],
                           **kwargs)
    free = generate(model, [], **kwargs)
    assert len(constrained) == 3 * beams
    assert occurring_share(index, constrained) == 1.0
    assert all(2 <= len(c.tokens) <= 6 for c in constrained)
    assert occurring_share(index, free) <= 0.2


def test_group_beam_search_clues_all_occur(index, model):
    embeds, mask = prompts(2)
    processor = CorpusConstrainedLogitsProcessor(index, EOS, min_clue_len=1, max_clue_len=5)
    results = group_beam_search(model, embeds, processor, eos_token_id=EOS, num_beams=6, num_beam_groups=3,
                                diversity_penalty=0.5, max_new_tokens=6, attention_mask=mask)
    assert len(results) == 2
    for clues in results:
        assert 1 <= len(clues) <= 6 and occurring_share(index, clues) == 1.0
        assert all(len(c.tokens) <= 5 and len(c.token_logprobs) == len(c.tokens) for c in clues)
        assert len({c.tokens for c in clues}) > 1  # diverse groups do not return one clue six times
        assert [c.score for c in clues] == sorted((c.score for c in clues), reverse=True)


def test_group_beam_search_without_constraint_leaves_corpus(index, model):
    def no_constraint(clue_tokens, scores):  # a plain callable processor: called once a step
        return scores

    embeds, _ = prompts(1)
    clues = group_beam_search(model, embeds, no_constraint, eos_token_id=EOS, num_beams=4,
                              num_beam_groups=2, max_new_tokens=5)[0]
    assert occurring_share(index, clues) <= 0.25


def test_mask_follows_corpus_continuations_and_eos_rules(index):
    processor = CorpusConstrainedLogitsProcessor(index, EOS, min_clue_len=2, max_clue_len=3)
    first = int(index.passage_tokens(0)[0])
    second = int(index.passage_tokens(0)[1])
    vocab = 32000
    out0 = processor(torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, vocab))
    allowed0 = torch.isfinite(out0[0]).nonzero().flatten().tolist()
    assert allowed0 == index.occurring_tokens().tolist()  # step 0: any corpus token, no EOS yet
    out1 = processor(torch.tensor([[first]]), torch.zeros(1, vocab))
    assert torch.isfinite(out1[0]).nonzero().flatten().tolist() == index.continuations([first])[0].tolist()
    out2 = processor(torch.tensor([[first, second]]), torch.zeros(1, vocab))
    expected = sorted(index.continuations([first, second])[0].tolist() + [EOS])  # min length reached
    assert torch.isfinite(out2[0]).nonzero().flatten().tolist() == expected
    third = int(index.passage_tokens(0)[2])
    out3 = processor(torch.tensor([[first, second, third]]), torch.zeros(1, vocab))
    assert torch.isfinite(out3[0]).nonzero().flatten().tolist() == [EOS]  # max length: only EOS
    fresh = CorpusConstrainedLogitsProcessor(index, EOS, min_clue_len=3, max_clue_len=5)
    fresh(torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, vocab))
    dead = fresh(torch.tensor([[31999]]), torch.zeros(1, vocab))  # not in the corpus: only EOS, even if short
    assert torch.isfinite(dead[0]).nonzero().flatten().tolist() == [EOS]


def test_clues_from_sequences_cuts_at_eos_and_pad():
    seqs = torch.tensor([[5, 6, EOS, PAD], [7, PAD, PAD, PAD]])
    clues = clues_from_sequences(seqs, torch.tensor([-1.0, -2.0]), EOS, PAD)
    assert clues == [Clue((5, 6), -1.0), Clue((7,), -2.0)]
