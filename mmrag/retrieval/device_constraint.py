"""The corpus constraint with its tables on the model's device: no host work and no host sync a step.

`DeviceCorpusConstraint` gives the same masks as `CorpusConstrainedLogitsProcessor` (the host path,
mmrag/retrieval/constrained_decoding.py) but keeps every beam's suffix-array range [lo, hi) as a
device tensor and advances it with tensor ops:

- a range seen at most `C` = the index's `frequent_min_count` times is read through a fixed window of
  C suffix-array rows: the allowed next tokens are `tokens[sa[lo + j] + depth]` (j < count), scattered
  into the mask, and the child range of a token t is lo + #(window < t) .. lo + #(window <= t);
- a range seen more often is one row of the device copy of the index's continuation tables (the
  bigram CSR rows of frequent first tokens and the frequent-prefix table, keyed like the host's
  `lo * (max_depth + 1) + depth`): its allowed set is a bit-packed row, its children come from one
  `searchsorted` over the rows' (row, token) keys and the rows' cumulative counts;
- the empty clue's row (every token of the corpus) is built once.

The tables cover every prefix up to the index's `max_precomputed_depth`; clues longer than that (an
index built with a small depth) or a sharded index use the host path (`make_corpus_constraint`,
`backend: auto`). In `group_beam_search` the ranges follow the beams by the choice's parent rows
(`advance`), queued after the step's forward: nothing waits for the host.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from mmrag.common.errors import ConfigError
from mmrag.retrieval.constrained_decoding import CorpusConstrainedLogitsProcessor
from mmrag.retrieval.corpus_index import CorpusIndex

__all__ = ["DeviceCorpusConstraint", "DeviceMask", "make_corpus_constraint", "CONSTRAINT_BACKENDS",
           "device_tables_cover"]

CONSTRAINT_BACKENDS = ("auto", "host", "device")


def device_tables_cover(index, max_clue_len: int) -> bool:
    """Whether the device path can serve `index` for clues of up to `max_clue_len` tokens."""
    return isinstance(index, CorpusIndex) and max_clue_len - 1 <= int(index.header["max_precomputed_depth"])


def make_corpus_constraint(index, eos_token_id: int, min_clue_len: int, max_clue_len: int, *,
                           backend: str = "auto", device: Optional[torch.device] = None):
    """The constraint for `backend`: `host` (CPU index work, masks sent to the device), `device` (tables
    on `device`) or `auto` (device when `device` is a GPU and the tables cover the clue length)."""
    if backend not in CONSTRAINT_BACKENDS:
        raise ConfigError(f"evaluation.constraint_backend: expected one of {', '.join(CONSTRAINT_BACKENDS)}, "
                          f"got {backend!r}")
    device = torch.device(device if device is not None else "cpu")
    covered = device_tables_cover(index, max_clue_len)
    if backend == "device" and not covered:
        raise ConfigError(f"evaluation.constraint_backend: device needs one (unsharded) corpus index built with "
                          f"max_precomputed_depth >= max_clue_len - 1 = {max_clue_len - 1}; use host or auto")
    if backend == "device" or (backend == "auto" and covered and device.type == "cuda"):
        return DeviceCorpusConstraint(index, eos_token_id, min_clue_len, max_clue_len, device=device)
    return CorpusConstrainedLogitsProcessor(index, eos_token_id, min_clue_len, max_clue_len)


class DeviceMask:
    """One step's allowed (row, token) entries as a (rows, vocab) bool tensor on the scores' device."""

    __slots__ = ("allowed",)

    def __init__(self, allowed: torch.Tensor) -> None:
        self.allowed = allowed


class DeviceCorpusConstraint:
    """Masks every token that would leave the corpus, with the same rules as the host processor
    (EOS once the clue has `min_clue_len` tokens, only EOS after `max_clue_len` or when the clue cannot
    continue), from device tensors. Two ways to drive it:

    - `start(rows, vocab)` then `advance(parent_rows, tokens)` once a step (group_beam_search): the
      ranges follow the beams on the device;
    - `prepare(clue_tokens, vocab, device)` + `apply` (or `__call__` as a LogitsProcessor): ranges from
      the clue tokens, narrowed from the root (for tests and HF generate).
    """

    tracks_rows = True  # group_beam_search drives it by start/advance

    def __init__(self, index: CorpusIndex, eos_token_id: int, min_clue_len: int = 1, max_clue_len: int = 10,
                 device: Optional[torch.device] = None) -> None:
        if min_clue_len < 1 or max_clue_len < min_clue_len:
            raise ValueError(f"need 1 <= min_clue_len <= max_clue_len, got {min_clue_len}, {max_clue_len}")
        if not device_tables_cover(index, max_clue_len):
            raise ValueError(f"the device constraint needs one CorpusIndex with max_precomputed_depth >= "
                             f"{max_clue_len - 1}")
        self.eos_token_id, self.min_clue_len, self.max_clue_len = int(eos_token_id), min_clue_len, max_clue_len
        self.device = torch.device(device if device is not None else "cpu")
        self.separator = index.separator_id
        self.window = int(index.header["frequent_min_count"])
        self.key_stride = int(index.header["max_precomputed_depth"]) + 1
        arrays = index._a
        to = lambda a, dt=torch.int64: torch.from_numpy(np.ascontiguousarray(a).astype(np.int64)).to(  # noqa: E731
            self.device, dt)
        self.tokens = to(arrays["tokens"], torch.int32)
        self.sa = to(arrays["sa"])
        self.token_starts = to(arrays["token_starts"])
        self.root_hi = int(arrays["token_starts"][self.separator])
        self._build_tables(arrays)
        self._lo: Optional[torch.Tensor] = None
        self._hi: Optional[torch.Tensor] = None
        self._depth = 0
        self._prompt_len, self._last_len = 0, -1

    # ------------------------------------------------------------------ tables
    def _build_tables(self, a) -> None:
        """Device CSR of every prefix seen more than `window` times (depth 1 from the bigram table,
        depth >= 2 from the frequent table): sorted keys, per entry (row, token) keys, child offsets
        and counts, and one bit-packed allowed row per prefix."""
        starts, stride, sep = np.asarray(a["token_starts"]), self.key_stride, self.separator
        first = np.flatnonzero(np.diff(starts[: sep + 1]) > self.window)
        b_ptr = np.asarray(a["bigram_indptr"])
        rows = [(int(starts[t]) * stride + 1, np.asarray(a["bigram_next"][b_ptr[t]:b_ptr[t + 1]], dtype=np.int64),
                 np.asarray(a["bigram_count"][b_ptr[t]:b_ptr[t + 1]], dtype=np.int64)) for t in first]
        f_keys, f_ptr = np.asarray(a["frequent_keys"]), np.asarray(a["frequent_indptr"])
        rows += [(int(k), np.asarray(a["frequent_next"][f_ptr[i]:f_ptr[i + 1]], dtype=np.int64),
                  np.asarray(a["frequent_count"][f_ptr[i]:f_ptr[i + 1]], dtype=np.int64)) for i, k in enumerate(f_keys)]
        rows.sort(key=lambda row: row[0])
        n = len(rows)
        keys = np.array([r[0] for r in rows], dtype=np.int64)
        nexts = np.concatenate([r[1] for r in rows]) if n else np.zeros(0, np.int64)
        counts = np.concatenate([r[2] for r in rows]) if n else np.zeros(0, np.int64)
        lengths = np.array([len(r[1]) for r in rows], dtype=np.int64)
        before = np.cumsum(counts) - counts  # exclusive cumsum over all entries
        row_start = np.cumsum(lengths) - lengths
        offsets = before - np.repeat(np.append(before, 0)[row_start], lengths)  # ... minus its row's start
        row_of = np.repeat(np.arange(n, dtype=np.int64), lengths)
        packed = np.zeros((max(n, 1), (sep + 8) // 8), dtype=np.uint8)  # bit t % 8 of byte t // 8: token t
        np.bitwise_or.at(packed, (row_of, nexts >> 3), (1 << (nexts & 7)).astype(np.uint8))
        self.table_rows = n
        self.table_keys = torch.from_numpy(np.append(keys, np.iinfo(np.int64).max)).to(self.device)
        self.entry_keys = torch.from_numpy(np.append(row_of * (sep + 1) + nexts, np.iinfo(np.int64).max)).to(self.device)
        self.entry_offsets = torch.from_numpy(np.append(offsets, 0).astype(np.int64)).to(self.device)
        self.entry_counts = torch.from_numpy(np.append(counts, 0)).to(self.device)
        self.table_bits = torch.from_numpy(packed).to(self.device)
        root = np.zeros(sep + 1, dtype=bool)
        root[np.flatnonzero(np.diff(starts[: sep + 1]))] = True
        self.root_bits = torch.from_numpy(root).to(self.device)
        self._shifts = torch.arange(8, dtype=torch.uint8, device=self.device)
        self._window_steps = torch.arange(self.window, dtype=torch.int64, device=self.device)

    def table_bytes(self) -> int:
        """Device bytes held by the index copy and the tables."""
        held = (self.tokens, self.sa, self.token_starts, self.table_keys, self.entry_keys, self.entry_offsets,
                self.entry_counts, self.table_bits, self.root_bits)
        return int(sum(t.numel() * t.element_size() for t in held))

    # ------------------------------------------------------------------ ranges
    def _window_values(self, lo: torch.Tensor, count: torch.Tensor, depth: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(rows, C) next tokens of the first C suffixes of each range, and which of them are real."""
        pos = (lo[:, None] + self._window_steps).clamp_(max=self.sa.numel() - 1)
        at = (self.sa[pos] + depth).clamp_(max=self.tokens.numel() - 1)
        return self.tokens[at].long(), self._window_steps < count[:, None]

    def _table_row(self, lo: torch.Tensor, depth: int) -> torch.Tensor:
        key = lo * self.key_stride + depth
        return torch.searchsorted(self.table_keys, key).clamp_(max=max(self.table_rows - 1, 0))

    def narrow(self, lo: torch.Tensor, hi: torch.Tensor, depth: int, token: torch.Tensor
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Ranges of the prefixes (depth tokens, [lo, hi)) extended by `token`: empty when it never follows."""
        token = token.to(self.device, torch.int64)
        real = (token >= 0) & (token < self.separator)
        if depth == 0:
            t = token.clamp(0, self.separator - 1)
            lo_new, hi_new = self.token_starts[t], self.token_starts[t + 1]
            return torch.where(real, lo_new, 0), torch.where(real, hi_new, 0)
        count = hi - lo
        big = count > self.window
        values, inside = self._window_values(lo, count, depth)
        inside &= ~big[:, None]
        below = ((values < token[:, None]) & inside).sum(1)
        upto = ((values <= token[:, None]) & inside).sum(1)
        lo_w, hi_w = lo + below, lo + upto
        if self.table_rows:
            row = self._table_row(lo, depth)
            key = row * (self.separator + 1) + token.clamp(0, self.separator)
            entry = torch.searchsorted(self.entry_keys, key)
            hit = self.entry_keys[entry] == key
            lo_t = lo + torch.where(hit, self.entry_offsets[entry], 0)
            hi_t = lo_t + torch.where(hit, self.entry_counts[entry], 0)
            lo_w, hi_w = torch.where(big, lo_t, lo_w), torch.where(big, hi_t, hi_w)
        lo_new, hi_new = torch.where(real, lo_w, lo), torch.where(real, hi_w, lo)
        return lo_new, hi_new

    def mask(self, lo: torch.Tensor, hi: torch.Tensor, depth: int, vocab: int) -> torch.Tensor:
        """(rows, vocab) allowed tokens of clues of `depth` tokens with ranges [lo, hi)."""
        rows, eos, sep = lo.shape[0], self.eos_token_id, self.separator
        width = min(vocab, sep)
        allowed = torch.zeros((rows, vocab), dtype=torch.bool, device=self.device)
        if depth == 0:
            allowed[:, :width] = self.root_bits[:width]
            return allowed
        if depth >= self.max_clue_len:
            allowed[:, eos] = True
            return allowed
        count = hi - lo
        big = count > self.window
        values, inside = self._window_values(lo, count, depth)
        inside &= ~big[:, None]
        bits = torch.zeros((rows, sep + 1), dtype=torch.bool, device=self.device)
        bits.scatter_(1, torch.where(inside, values, sep), True)
        if self.table_rows:
            packed = self.table_bits[self._table_row(lo, depth)]
            unpacked = ((packed[..., None] >> self._shifts) & 1).bool().view(rows, -1)[:, : sep + 1]
            bits |= unpacked & big[:, None]
        can_continue = bits[:, :sep].any(1)
        allowed[:, :width] = bits[:, :width] & can_continue[:, None]
        eos_ok = ~can_continue if depth < self.min_clue_len else torch.ones_like(can_continue)
        allowed[:, eos] |= eos_ok
        return allowed

    # ------------------------------------------------------------------ driving
    def reset(self) -> None:
        self._lo = self._hi = None
        self._depth, self._last_len = 0, -1

    def start(self, rows: int, vocab: int) -> DeviceMask:
        """Every row at the empty clue; the first step's mask."""
        self._lo = torch.zeros(rows, dtype=torch.int64, device=self.device)
        self._hi = torch.full((rows,), self.root_hi, dtype=torch.int64, device=self.device)
        self._depth, self._vocab = 0, vocab
        return DeviceMask(self.mask(self._lo, self._hi, 0, vocab))

    def advance(self, parent_rows: torch.Tensor, tokens: torch.Tensor) -> DeviceMask:
        """New beams = parent row + token (both (rows,) on the device); the next step's mask."""
        parents = parent_rows.to(self.device, torch.int64)
        self._lo, self._hi = self.narrow(self._lo[parents], self._hi[parents], self._depth, tokens)
        self._depth += 1
        return DeviceMask(self.mask(self._lo, self._hi, self._depth, self._vocab))

    def ranges(self, clue_tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """[lo, hi) of clues (rows, clue_len), narrowed from the root."""
        clue = clue_tokens.to(self.device, torch.int64)
        lo = torch.zeros(clue.shape[0], dtype=torch.int64, device=self.device)
        hi = torch.full_like(lo, self.root_hi)
        for depth in range(clue.shape[1]):
            lo, hi = self.narrow(lo, hi, depth, clue[:, depth])
        return lo, hi

    def prepare(self, clue_tokens: torch.Tensor, vocab: int, device: torch.device) -> DeviceMask:
        lo, hi = self.ranges(clue_tokens)
        return DeviceMask(self.mask(lo, hi, clue_tokens.shape[1], vocab))

    def apply(self, prepared: DeviceMask, scores: torch.Tensor) -> torch.Tensor:
        """Scores of allowed tokens, -inf elsewhere."""
        if prepared.allowed.shape != scores.shape:
            raise ValueError(f"scores have shape {tuple(scores.shape)}, the mask {tuple(prepared.allowed.shape)}")
        return scores.masked_fill(~prepared.allowed.to(scores.device), float("-inf"))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        cur_len = input_ids.shape[1]
        if cur_len < self._last_len or self._last_len < 0:
            self._prompt_len = cur_len
        self._last_len = cur_len
        return self.apply(self.prepare(input_ids[:, self._prompt_len:], scores.shape[-1], scores.device), scores)
