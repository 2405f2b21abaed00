"""Batched diverse beam search: every prompt of a padded batch gets exactly what it gets alone, what a
cache-free per-prompt reference search gets, and the batch costs one prefill + one forward a step."""
from __future__ import annotations

from typing import List

import numpy as np
import pytest
import torch

from mmrag.retrieval.clue_scoring import Clue
from mmrag.retrieval.constrained_decoding import CorpusConstrainedLogitsProcessor
from mmrag.retrieval.group_beam_search import group_beam_search

EOS, HIDDEN = 2, 32  # as in tests/retrieval/conftest.py, which builds the `index` and `model` fixtures
PROMPT_LENS = [6, 2, 4, 1]  # left padding differs per prompt
SEARCH = dict(eos_token_id=EOS, num_beams=6, num_beam_groups=3, diversity_penalty=0.5, length_penalty=1.5,
              max_new_tokens=6)


class NoConstraint:
    """Any token may follow: the unconstrained decode."""

    def reset(self) -> None:
        pass

    def __call__(self, input_ids, scores):
        return scores


class ForwardLog:
    """Rows of every LM-head call: the prefill's (one row per prompt), then each decode step's."""

    def __init__(self, model) -> None:
        self.calls: List[tuple] = []
        self._handle = model.lm_head.register_forward_pre_hook(self._hook)

    def _hook(self, module, args) -> None:
        self.calls.append(("decode" if self.calls else "prefill", args[0].shape[0]))

    def remove(self) -> None:
        self._handle.remove()


def padded_prompts(left: bool = True):
    """Prompts of PROMPT_LENS real embeddings, padded (with random junk) to the longest."""
    torch.manual_seed(1)
    longest = max(PROMPT_LENS)
    embeds = torch.randn(len(PROMPT_LENS), longest, HIDDEN)
    mask = torch.zeros(len(PROMPT_LENS), longest, dtype=torch.long)
    for row, length in enumerate(PROMPT_LENS):
        real = slice(longest - length, longest) if left else slice(0, length)
        mask[row, real] = 1
    return embeds, mask


def processor_for(kind: str, index):
    return CorpusConstrainedLogitsProcessor(index, EOS, min_clue_len=1, max_clue_len=5) if kind == "constrained" \
        else NoConstraint()


def assert_same_clues(got: List[Clue], expected: List[Clue]) -> None:
    assert [c.tokens for c in got] == [c.tokens for c in expected]
    np.testing.assert_allclose([c.score for c in got], [c.score for c in expected], rtol=0, atol=1e-5)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.token_logprobs, b.token_logprobs, rtol=0, atol=1e-5)


def reference_search(model, prompt: torch.Tensor, processor, *, eos_token_id, num_beams, num_beam_groups,
                     diversity_penalty, length_penalty, max_new_tokens) -> List[Clue]:
    """Diverse beam search of one unpadded prompt (len, hidden) without a KV cache, in plain loops: every
    step re-runs the prompt plus each beam's clue; groups in order, earlier groups' picks penalise later ones."""
    size, embed = num_beams // num_beam_groups, model.get_input_embeddings()
    beams = [(0.0 if j == 0 else float("-inf"), [], []) for _ in range(num_beam_groups) for j in range(size)]
    finished: List[Clue] = []
    clue = lambda seq, lps, score: Clue(tuple(seq), score / max(len(seq), 1) ** length_penalty, tuple(lps))  # noqa
    processor.reset()
    for _ in range(max_new_tokens):
        rows = torch.stack([torch.cat([prompt, embed(torch.tensor(seq, dtype=torch.long))]) for _, seq, _ in beams])
        logp = torch.log_softmax(model(inputs_embeds=rows).logits[:, -1].float(), dim=-1)
        picked, new_beams = torch.zeros(logp.shape[-1]), []
        for g in range(num_beam_groups):
            group = beams[g * size:(g + 1) * size]
            ids = torch.tensor([seq for _, seq, _ in group], dtype=torch.long).reshape(size, -1)
            processed = processor(ids, logp[g * size:(g + 1) * size].clone())
            candidates = torch.tensor([s for s, _, _ in group])[:, None] + processed - diversity_penalty * picked
            top = torch.topk(candidates.view(-1), 2 * size)
            kept = []
            for value, flat in zip(top.values.tolist(), top.indices.tolist()):
                if not np.isfinite(value) or len(kept) == size:
                    break
                (score, seq, lps), token = group[flat // logp.shape[-1]], flat % logp.shape[-1]
                true_score = float(score + processed[flat // logp.shape[-1], token])
                if token == eos_token_id:
                    finished += [clue(seq, lps, true_score)] if seq else []
                    continue
                kept.append((true_score, seq + [token], lps + [float(logp[g * size + flat // logp.shape[-1], token])]))
                picked[token] += 1
            new_beams += kept + [(float("-inf"), group[0][1] + [eos_token_id], group[0][2] + [0.0])] * (size - len(kept))
        beams = new_beams
        if all(not np.isfinite(score) for score, _, _ in beams):
            break
    finished += [clue(seq, lps, score) for score, seq, lps in beams if np.isfinite(score) and seq]
    return sorted(finished, key=lambda c: -c.score)


# 0.03 is about the gap between neighbouring log-probs of this model: the penalty's exact value matters
@pytest.mark.parametrize("decoder", ["hf_cache", "shared_prompt"])
@pytest.mark.parametrize("kind,penalty", [("constrained", 0.5), ("unconstrained", 0.5), ("unconstrained", 0.03)])
def test_batched_search_equals_each_prompt_alone_and_reference(index, model, kind, penalty, decoder):
    embeds, mask = padded_prompts()
    search = {**SEARCH, "diversity_penalty": penalty, "decoder": decoder}
    batched = group_beam_search(model, embeds, processor_for(kind, index), attention_mask=mask, **search)
    assert len(batched) == len(PROMPT_LENS)
    for row, length in enumerate(PROMPT_LENS):
        prompt = embeds[row, -length:]
        alone = group_beam_search(model, prompt[None], processor_for(kind, index), **search)[0]
        assert len(batched[row]) == SEARCH["num_beams"]
        assert_same_clues(batched[row], alone)
        with torch.no_grad():
            reference = reference_search(model, prompt, processor_for(kind, index),
                                         **{k: v for k, v in search.items() if k != "decoder"})
        assert_same_clues(batched[row], reference[: SEARCH["num_beams"]])
    clues = [c for per_prompt in batched for c in per_prompt]
    occurring = [len(c.tokens) > 0 and index.count(c.tokens) > 0 for c in clues]
    assert all(occurring) if kind == "constrained" else np.mean(occurring) < 0.5


def test_right_padding_is_left_aligned_first(index, model):
    left = group_beam_search(model, *padded_prompts()[:1], processor_for("constrained", index),
                             attention_mask=padded_prompts()[1], **SEARCH)
    embeds, mask = padded_prompts(left=False)
    shifted = embeds.clone()
    for row, length in enumerate(PROMPT_LENS):  # the same real embeddings, now at the start of the row
        shifted[row, :length] = padded_prompts()[0][row, -length:]
    right = group_beam_search(model, shifted, processor_for("constrained", index), attention_mask=mask, **SEARCH)
    for a, b in zip(right, left):
        assert_same_clues(a, b)


@pytest.mark.parametrize("decoder", ["hf_cache", "shared_prompt"])
@pytest.mark.parametrize("kind", ["constrained", "unconstrained"])
def test_one_prefill_then_one_forward_per_step_over_all_beams(index, model, kind, decoder):
    embeds, mask = padded_prompts()
    log = ForwardLog(model)
    try:
        group_beam_search(model, embeds, processor_for(kind, index), attention_mask=mask, decoder=decoder, **SEARCH)
    finally:
        log.remove()
    rows = len(PROMPT_LENS) * SEARCH["num_beams"]
    # the last step's choice needs no forward after it: prefill + (max_new_tokens - 1) decode steps
    assert log.calls == [("prefill", len(PROMPT_LENS))] + [("decode", rows)] * (SEARCH["max_new_tokens"] - 1)


def test_search_stops_when_every_beam_of_every_prompt_finished(index, model):
    embeds, mask = padded_prompts()
    processor = CorpusConstrainedLogitsProcessor(index, EOS, min_clue_len=1, max_clue_len=2)
    log = ForwardLog(model)
    try:
        results = group_beam_search(model, embeds, processor, attention_mask=mask, **{**SEARCH, "max_new_tokens": 9})
    finally:
        log.remove()
    # steps 1-2 write clue tokens, step 3 can only write EOS: every beam is done after it. Step 3's
    # forward was queued before the host saw that (it overlaps the host's wait); no 4th step is chosen.
    assert [kind for kind, _ in log.calls] == ["prefill", "decode", "decode", "decode"]
    assert all(1 <= len(c.tokens) <= 2 and index.count(c.tokens) > 0 for clues in results for c in clues)


def test_bad_arguments_raise(model):
    embeds, mask = padded_prompts()
    with pytest.raises(ValueError, match="multiple of num_beam_groups"):
        group_beam_search(model, embeds, NoConstraint(), **{**SEARCH, "num_beam_groups": 4})
    with pytest.raises(ValueError, match="attention_mask shape"):
        group_beam_search(model, embeds, NoConstraint(), attention_mask=mask[:, 1:], **SEARCH)
    assert group_beam_search(model, embeds[:0], NoConstraint(), **SEARCH) == []
