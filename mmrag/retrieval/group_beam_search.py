"""Diverse (group) beam search over a whole batch of prompts at once.

transformers 5 moved diverse beam search out of the library into a hub "custom generate" repository,
which cannot be used offline, so the project decodes its clues here (Vijayakumar et al.: Hamming
diversity between groups, as in the GeMKR evaluation: 10 beams, 10 groups, penalty 0.5).

All prompts of a batch share one prefill (left-padded, explicit position ids) and then one forward a
step over every beam of every prompt (the model side lives in mmrag.retrieval.beam_decoders). Rows are
laid out (group, prompt, beam in group), so one group's beams of all prompts are a contiguous block of
rows and the per-group choice (top-k, EOS bookkeeping, diversity penalty) runs as tensor operations
over the prompts. The constraint depends only on a beam's clue, which is fixed one step ahead, so the
logits processor builds one step's mask for all rows at once while that step's forward runs; the host
waits for the device once a step. A prompt's result does not depend on the other prompts of its batch
(up to float rounding of the model's forward).
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from torch.profiler import record_function

from mmrag.retrieval.beam_decoders import BeamGraphWorkspace, CudaGraphCall, make_beam_decoder
from mmrag.retrieval.clue_scoring import Clue

# (token ids [rows, clue_len] on the CPU, log-probs [rows, vocab]) -> scores with forbidden tokens at -inf
LogitsProcessorLike = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def group_beam_search(model, inputs_embeds: torch.Tensor, processor: LogitsProcessorLike, *,
                      eos_token_id: int, num_beams: int = 10, num_beam_groups: int = 10,
                      diversity_penalty: float = 0.5, length_penalty: float = 1.5, max_new_tokens: int = 11,
                      num_return_sequences: Optional[int] = None,
                      attention_mask: Optional[torch.Tensor] = None, decoder: str = "auto",
                      cuda_graphs: bool = True, workspace: Optional[BeamGraphWorkspace] = None) -> List[List[Clue]]:
    """Diverse beam search for every prompt of `inputs_embeds` (batch, len, hidden), all prompts together.

    `attention_mask` (batch, len) marks real prompt positions (any padding side; prompts are
    left-aligned here). `processor` sees every beam row's clue tokens once per step (CPU LongTensor
    [rows, clue_len], rows ordered (group, prompt, beam in group)); it must key its state by the clue
    tokens only, as CorpusConstrainedLogitsProcessor does. A processor with `prepare(clue_tokens, vocab,
    device)` + `apply(prepared, log_probs)` has its index work run while the model's forward runs;
    any other is called as `processor(clue_tokens, log_probs)`. A processor with `tracks_rows = True`
    (DeviceCorpusConstraint) is driven by `start(rows, vocab)` and `advance(parent_rows, tokens)` on the
    device instead, queued behind each step's forward. `decoder`: `auto` | `hf_cache` |
    `shared_prompt` (see mmrag.retrieval.beam_decoders). `cuda_graphs`: on a GPU, replay the beam
    choice and the shared-prompt decoder's steps from CUDA graphs (same results, less host time);
    `workspace` (a BeamGraphWorkspace passed to every batch) keeps them across calls. Returns, per prompt, up to
    `num_return_sequences` clues sorted by length-normalised score (sum of log-probs /
    clue_length ** length_penalty), with per-token log-probs attached.
    """
    if num_beam_groups < 1 or num_beams % num_beam_groups:
        raise ValueError(f"num_beams ({num_beams}) must be a multiple of num_beam_groups ({num_beam_groups})")
    if inputs_embeds.dim() != 3:
        raise ValueError(f"inputs_embeds must be (batch, len, hidden), got shape {tuple(inputs_embeds.shape)}")
    batch = inputs_embeds.shape[0]
    if batch == 0 or max_new_tokens < 1:
        return [[] for _ in range(batch)]
    embeds, mask = left_aligned(inputs_embeds, attention_mask)
    group_size = num_beams // num_beam_groups
    search = _GroupSelection(eos_token_id, batch, num_beam_groups, group_size, diversity_penalty, length_penalty,
                             embeds.device, cuda_graphs, workspace)
    beams = make_beam_decoder(decoder, model, search.row_prompt(), num_beam_groups, group_size, max_new_tokens,
                              cuda_graphs, workspace)
    constraint = _two_phase(processor)
    constraint.reset()
    on_device = getattr(constraint, "tracks_rows", False)  # ranges follow the beams on the device
    with record_function("group_beam_search.prefill"):
        logits = beams.prefill(embeds, mask)
    if on_device:
        prepared = constraint.start(search.rows, logits.shape[-1])
    else:
        prepared = constraint.prepare(search.clue_rows(), logits.shape[-1], logits.device)
    for step in range(max_new_tokens):
        with record_function("group_beam_search.choose"):
            logp = torch.log_softmax(logits.float(), dim=-1)
            parent_rows, tokens = search.choose(logp, constraint.apply(prepared, logp))
        last = step == max_new_tokens - 1  # the last step's logits would never be read
        if not last:  # queued before the host waits for the choice, so the GPU never idles on it
            with record_function("group_beam_search.decode_step"):
                logits = beams.step(parent_rows, tokens)
            if on_device:  # device work queued behind the forward: no host index work, no wait
                with record_function("group_beam_search.prepare_mask"):
                    prepared = constraint.advance(parent_rows, tokens)
        with record_function("group_beam_search.commit"):
            search.commit()
        if last or search.all_dead():
            break
        if not on_device:
            with record_function("group_beam_search.prepare_mask"):
                prepared = constraint.prepare(search.clue_rows(), logits.shape[-1], logits.device)
    return [clues[: num_return_sequences or num_beams] for clues in search.results()]


class _CallProcessor:
    """A plain `processor(clue_tokens, log_probs)` in the prepare/apply shape (nothing to overlap)."""

    def __init__(self, processor: LogitsProcessorLike) -> None:
        self.processor = processor

    def reset(self) -> None:
        if hasattr(self.processor, "reset"):
            self.processor.reset()

    def prepare(self, clue_tokens: torch.Tensor, vocab: int, device: torch.device) -> torch.Tensor:
        return clue_tokens

    def apply(self, clue_tokens: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
        return self.processor(clue_tokens, logp.clone())  # a processor may write into its scores


def _two_phase(processor):
    return processor if hasattr(processor, "prepare") and hasattr(processor, "apply") else _CallProcessor(processor)


class _SelectionBuffers:
    """The beam scores the choice graph reads and writes, and that graph."""

    def __init__(self, groups: int, batch: int, group_size: int, device: torch.device) -> None:
        self.scores = torch.zeros((groups, batch, group_size), device=device)
        self.choose: Optional[CudaGraphCall] = None


class _HostCopies:
    """Device tensors copied to the host without blocking; `wait` blocks once for all of them."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        self.host = {name: t.to("cpu", non_blocking=True) for name, t in tensors.items()}
        device = next(iter(tensors.values())).device
        self.event = None
        if device.type == "cuda":
            self.event = torch.cuda.Event()
            self.event.record(torch.cuda.current_stream(device))

    def wait(self) -> dict:
        if self.event is not None:
            self.event.synchronize()
        return self.host


def left_aligned(embeds: torch.Tensor, mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Move every prompt's real positions to the right end (order kept) and drop all-padding columns.

    Returns (embeds, mask); mask is None when no prompt has padding left.
    """
    if mask is None:
        return embeds, None
    if mask.shape != embeds.shape[:2]:
        raise ValueError(f"attention_mask shape {tuple(mask.shape)} does not match inputs_embeds "
                         f"{tuple(embeds.shape[:2])}")
    mask = mask.to(embeds.device).long()
    if bool(mask.all()):
        return embeds, None
    order = torch.sort(mask, dim=1, stable=True).indices  # padding (0) first, real positions in order
    mask = mask.gather(1, order)
    embeds = embeds.gather(1, order[..., None].expand_as(embeds))
    longest = int(mask.sum(1).max())
    if longest == 0:
        raise ValueError("attention_mask: every prompt is empty (all zeros)")
    embeds, mask = embeds[:, -longest:], mask[:, -longest:]
    return embeds, (None if bool(mask.all()) else mask)


class _GroupSelection:
    """The search side: beam scores and clues of every (group, prompt, beam) and the finished clues.

    Scores live on the model's device (they meet the log-probs there); clue tokens and their
    log-probs on the CPU (the processor reads them as lists; finished clues are Python objects).
    A step is `choose` (device work, host copies queued) then `commit` (waits for the copies once).
    """

    def __init__(self, eos_token_id: int, batch: int, groups: int, group_size: int,
                 diversity_penalty: float, length_penalty: float, device: torch.device, cuda_graphs: bool,
                 workspace: Optional[BeamGraphWorkspace] = None) -> None:
        self.eos = int(eos_token_id)
        self.batch, self.groups, self.group_size = batch, groups, group_size
        self.diversity_penalty, self.length_penalty = diversity_penalty, length_penalty
        self.device = device
        # the graph bakes in the shapes and these constants; a workspace keeps it for the next batch
        key = ("selection", batch, groups, group_size, self.eos, float(diversity_penalty), str(device))
        build = lambda: _SelectionBuffers(groups, batch, group_size, device)  # noqa: E731
        buffers = workspace.entry(key, build) if workspace is not None else build()
        if buffers.choose is None:
            buffers.choose = CudaGraphCall(self._choose_all_groups, enabled=cuda_graphs and device.type == "cuda")
        self._choose = buffers.choose
        # summed log-probs; each group starts from one live beam, or its beams would all be equal
        self.scores = buffers.scores
        self.scores.fill_(float("-inf"))
        self.scores[:, :, 0].fill_(0.0)  # not `= 0.0`: on a GPU that copies a host tensor and waits for the device
        self.tokens = torch.zeros((groups, batch, group_size, 0), dtype=torch.long)
        self.logprobs = torch.zeros((groups, batch, group_size, 0), dtype=torch.float32)
        self.finished: List[List[Clue]] = [[] for _ in range(batch)]
        self._host_scores = torch.full(self.scores.shape, float("-inf"))  # the same start, made on the host
        self._host_scores[:, :, 0] = 0.0
        self._pending: Optional[_HostCopies] = None

    @property
    def rows(self) -> int:
        return self.groups * self.batch * self.group_size

    def row_prompt(self) -> torch.Tensor:
        """(rows,) prompt index of every beam row, rows ordered (group, prompt, beam in group)."""
        prompts = torch.arange(self.batch, device=self.device)
        return prompts.view(1, -1, 1).expand(self.groups, -1, self.group_size).reshape(-1)

    def clue_rows(self) -> torch.Tensor:
        """(rows, clue_len) clue tokens of every beam row, on the CPU."""
        return self.tokens.reshape(self.groups * self.batch * self.group_size, self.tokens.shape[-1])

    def all_dead(self) -> bool:
        return not bool(torch.isfinite(self._host_scores).any())

    def choose(self, logp: torch.Tensor, processed: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Choose every group's beams for one step; earlier groups' picks penalise later groups.

        logp / processed: (rows, vocab) next-token log-probs before / after the constraint. Returns
        (parent row of each new beam, its token), both (rows,) on the device; the host copies of the
        choice are queued and read by `commit`.
        """
        row_parents, row_tokens, *picks = self._choose(logp, processed)
        names = ("parents", "tokens", "scores", "token_lps", "finishing", "finish_parents", "finish_scores")
        self._pending = _HostCopies(**dict(zip(names, picks)))
        return row_parents, row_tokens

    def _choose_all_groups(self, logp: torch.Tensor, processed: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Device work of `choose`, fixed shapes and no host reads (so a CUDA graph can replay it)."""
        vocab = logp.shape[-1]
        picked = torch.zeros((self.batch, vocab), device=logp.device)  # tokens chosen this step, per prompt
        rows = self.batch * self.group_size
        blocks, processed_blocks = logp.view(self.groups, rows, vocab), processed.view(self.groups, rows, vocab)
        picks = [self._choose_group(g, blocks[g], processed_blocks[g], picked) for g in range(self.groups)]
        parents, tokens, scores, token_lps, finishing, finish_parents, finish_scores = (
            torch.stack(column) for column in zip(*picks))
        self.scores.copy_(scores)
        first_row = torch.arange(self.groups * self.batch, device=logp.device).view(self.groups, self.batch, 1)
        return ((first_row * self.group_size + parents).reshape(-1), tokens.reshape(-1),
                parents, tokens, scores, token_lps, finishing, finish_parents, finish_scores)

    def commit(self) -> None:
        """Wait for the last choice's host copies; record finished clues and extend the live ones."""
        host = self._pending.wait()
        self._pending = None
        self._record_finished(host["finishing"].numpy(), host["finish_parents"], host["finish_scores"])
        self._extend(host["parents"], host["tokens"], host["token_lps"])
        self._host_scores = host["scores"]

    def _choose_group(self, g: int, logp: torch.Tensor, processed: torch.Tensor, picked: torch.Tensor
                      ) -> Tuple[torch.Tensor, ...]:
        """One group's choice for all prompts: the best `group_size` non-EOS continuations (dead beams
        fill a group the corpus cannot continue); EOS candidates ranked above the last kept one finish
        their parent's clue. Updates `picked` with the kept tokens."""
        batch, size = self.batch, self.group_size
        vocab = logp.shape[-1]
        processed = processed.reshape(batch, size * vocab)
        candidates = (self.scores[g].unsqueeze(-1) + processed.view(batch, size, vocab)
                      - self.diversity_penalty * picked.unsqueeze(1)).view(batch, size * vocab)
        ranked, flat = torch.topk(candidates, min(2 * size, size * vocab), dim=1)
        parent, token = flat // vocab, flat % vocab
        true_score = self.scores[g].gather(1, parent) + processed.gather(1, flat)  # without the penalty
        token_lp = logp.reshape(batch, size * vocab).gather(1, flat)
        finite, is_eos = torch.isfinite(ranked), token == self.eos
        continues = (finite & ~is_eos).long()
        considered = finite & (continues.cumsum(1) - continues < size)  # before the group filled up
        keep = considered & ~is_eos
        order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices[:, :size]  # kept first, in rank
        live = keep.gather(1, order)
        new_parent = torch.where(live, parent.gather(1, order), 0)
        new_token = torch.where(live, token.gather(1, order), self.eos)
        new_score = torch.where(live, true_score.gather(1, order), float("-inf"))
        new_lp = torch.where(live, token_lp.gather(1, order), 0.0)
        picked.scatter_add_(1, new_token, live.to(picked.dtype))
        return new_parent, new_token, new_score, new_lp, considered & is_eos, parent, true_score

    def _record_finished(self, finishing: np.ndarray, parents: torch.Tensor, scores: torch.Tensor) -> None:
        """Close the clues whose EOS was chosen; finishing/parents/scores are (groups, batch, candidates)."""
        if self.tokens.shape[-1] == 0:  # EOS before any clue token finishes nothing
            return
        hits = np.nonzero(finishing)
        if len(hits[0]) == 0:
            return
        # numpy views: per-element reads of torch tensors cost a dispatch each (thousands a batch)
        parents, scores = parents.numpy(), scores.numpy()
        tokens, logprobs = self.tokens.numpy(), self.logprobs.numpy()
        for g, b, i in zip(*hits):  # group, then rank order within a prompt
            parent = int(parents[g, b, i])
            self.finished[b].append(self._clue(tokens[g, b, parent], logprobs[g, b, parent], float(scores[g, b, i])))

    def _extend(self, parents: torch.Tensor, tokens: torch.Tensor, token_lps: torch.Tensor) -> None:
        """Clues of the new beams: the parent's clue plus the chosen token (dead beams: EOS, log-prob 0)."""
        index = parents[..., None].expand(-1, -1, -1, self.tokens.shape[-1])
        self.tokens = torch.cat([self.tokens.gather(2, index), tokens[..., None]], dim=-1)
        self.logprobs = torch.cat([self.logprobs.gather(2, index), token_lps[..., None]], dim=-1)

    def _clue(self, tokens: np.ndarray, logprobs: np.ndarray, score: float) -> Clue:
        length = max(len(tokens), 1)
        return Clue(tuple(tokens.tolist()), score / (length ** self.length_penalty), tuple(logprobs.tolist()))

    def results(self) -> List[List[Clue]]:
        """Per prompt: finished clues plus the live beams (unfinished clues count too), best first."""
        out = []
        host_scores, tokens, logprobs = self._host_scores.numpy(), self.tokens.numpy(), self.logprobs.numpy()
        for b in range(self.batch):
            clues = list(self.finished[b])
            for g in range(self.groups):
                for j in range(self.group_size):
                    score = float(host_scores[g, b, j])
                    if np.isfinite(score) and tokens.shape[-1] > 0:
                        clues.append(self._clue(tokens[g, b, j], logprobs[g, b, j], score))
            out.append(sorted(clues, key=lambda c: -c.score))
        return out
