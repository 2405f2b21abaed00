"""Exact inner-product top-k in torch: the dense database's `backend: torch`.

Why: faiss-gpu cannot be installed on the project's GPU machine (its CUDA 13 build with cuVS is an
81 MB wheel plus the cuVS libraries), and exact search is a matmul and a top-k, which torch does at
the GPU's speed. The rows are split evenly over the given devices (every visible GPU by default, else
the CPU); each device scores a block of queries against its rows chunk by chunk and keeps the best
`candidates` rows of each chunk, and the per-device results are merged on the host. bf16 on GPUs,
fp32 on the CPU, where the results equal faiss `Flat` (tested).

Re-rank (the default when rows are stored in bf16/fp16): bf16 rounds scores by ~1e-3, enough to swap
close neighbours (recall@10 0.975 on 1.2M x 768 unit vectors). The bf16 pass therefore only proposes
`candidates` rows per query (default max(4k, 32)); their float32 rows (kept on the device, or on the
host with `rerank_rows="host"`) are scored in float64 and the top k returned, ties to the lower row as
faiss does. Exact whenever the true top k lie among the bf16 top `candidates`, i.e. whenever the score
gap between rank k and rank `candidates` exceeds twice the bf16 error (~1e-3 here against ~1e-2).

Speed on GPUs: a chunk's scores stay in bf16 (no float32 copy) and are read once more by a max over
groups of `group` rows; the top-`candidates` groups hold the chunk's top `candidates` scores, so the
selection runs over `candidates x group` scores instead of a radix select over the whole chunk. On the
CPU (group 1) each chunk goes straight to torch's topk, a cheap partial sort there.

`TorchExactIndex` answers `search(queries, k) -> (scores, rows)` and `ntotal` like a faiss index, so
`DenseIndex.raw_search` treats both alike.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
RERANK = ("auto", True, False)
RERANK_ROWS = ("device", "host")
GPU_GROUP = 64  # rows a group of the grouped top-k on GPUs (the CPU's topk is a cheap partial sort: no groups)
RERANK_ELEMENTS = 1 << 25  # candidate vector elements gathered at once by the re-rank (256 MiB in float64)


def default_devices() -> List[str]:
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]


def default_candidates(k: int) -> int:
    return max(4 * k, 32)


class TorchExactIndex:
    def __init__(self, vectors: np.ndarray, devices: Optional[Sequence[str]] = None, dtype: str = "auto",
                 query_block: int = 8192, row_chunk: int = 1 << 20, rerank: Union[str, bool] = "auto",
                 candidates: int = 0, rerank_rows: str = "device", group: int = 0) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
        if rerank not in RERANK or isinstance(rerank, int) and not isinstance(rerank, bool):
            raise ValueError(f"rerank: expected auto, true or false, got {rerank!r}")
        if rerank_rows not in RERANK_ROWS:
            raise ValueError(f"rerank_rows: expected one of {', '.join(RERANK_ROWS)}, got {rerank_rows!r}")
        if int(candidates) < 0 or int(group) < 0:
            raise ValueError(f"candidates >= 0 (0: max(4k, 32)) and group >= 0 (0: {GPU_GROUP} on GPUs, 1 on the CPU) "
                             f"expected, got {candidates}, {group}")
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        self.ntotal, self.dim = int(vectors.shape[0]), int(vectors.shape[1])
        self.query_block, self.row_chunk = int(query_block), int(row_chunk)
        self.candidates, self.group = int(candidates), int(group)
        devices = list(devices or default_devices())
        bounds = np.linspace(0, self.ntotal, len(devices) + 1).astype(int)
        self.parts: List[Tuple[int, torch.Tensor]] = []
        self.exact_rows: List[Optional[torch.Tensor]] = []  # float32 rows for the re-rank, None: no re-rank
        for device, start, stop in zip(devices, bounds[:-1], bounds[1:]):
            if stop > start:
                want = DTYPES[dtype] or (torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16)
                rows = torch.from_numpy(vectors[start:stop]).to(device, want)
                self.parts.append((int(start), rows))
                self.exact_rows.append(_exact_copy(vectors[start:stop], rows, rerank, rerank_rows))
        self.rerank = any(e is not None for e in self.exact_rows)  # switch off to time the plain search

    def _candidates(self, rows: torch.Tensor, q: torch.Tensor, c: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The c best local rows of one device part for one query block by the stored precision's score,
        unordered, left on that device (no host sync): (scores, local rows int64), each (len(q), c)."""
        found_s, found_r = [], []
        for r0 in range(0, rows.shape[0], self.row_chunk):
            scores = q @ rows[r0:r0 + self.row_chunk].T  # bf16 out on GPUs: half the bytes of float32
            group = self.group or (GPU_GROUP if rows.device.type == "cuda" else 1)
            s, cols = top_columns(scores, min(c, scores.shape[1]), group)
            found_s.append(s)
            found_r.append(cols + r0)
        if len(found_s) == 1:
            return found_s[0], found_r[0]
        s, pick = torch.cat(found_s, 1).topk(c, dim=1)
        return s, torch.cat(found_r, 1).gather(1, pick)

    def _search_part(self, i: int, block: torch.Tensor, k: int, rerank: bool):
        """Queue one query block on part i: (scores, local rows) of its top k, or, for a host re-rank,
        the candidates still to re-rank (marked by a third element)."""
        _, rows = self.parts[i]
        exact = self.exact_rows[i] if rerank else None
        k = min(k, rows.shape[0])
        wanted = (self.candidates or default_candidates(k)) if exact is not None else 2 * k  # 2k: room for ties
        c = min(max(wanted, k), rows.shape[0])
        q32 = block.to(rows.device, non_blocking=True)
        s, r = self._candidates(rows, q32.to(rows.dtype), c)
        if exact is None:
            return best_first(s, r, k)
        if exact.device != rows.device:
            return s, r, True
        return exact_top(exact, q32, r, k)

    def _search_parts(self, queries: np.ndarray, k: int) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Per device part: (scores, global rows) of every query. Each query block is queued on every
        device before any result is read back, so the devices work at the same time."""
        host = torch.from_numpy(queries)
        per_part: List[Tuple[List[np.ndarray], List[np.ndarray]]] = [([], []) for _ in self.parts]
        pin = any(part.device.type == "cuda" for _, part in self.parts)
        rerank = self.rerank
        for q0 in range(0, len(queries), self.query_block):
            block = host[q0:q0 + self.query_block]
            if pin:
                block = block.pin_memory()
            queued = [self._search_part(i, block, k, rerank) for i in range(len(self.parts))]
            for i, ((offset, _), found, (out_s, out_r)) in enumerate(zip(self.parts, queued, per_part)):
                if len(found) == 3:  # float32 rows on the host: re-rank there
                    found = exact_top(self.exact_rows[i], host[q0:q0 + self.query_block], found[1].cpu(),
                                      min(k, self.parts[i][1].shape[0]))
                s, r = found
                out_s.append(s.float().cpu().numpy())
                out_r.append(r.cpu().numpy().astype(np.int64) + offset)
        return [(np.concatenate(s), np.concatenate(r)) for s, r in per_part]

    @torch.no_grad()
    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(scores, rows), each (nq, k), best first; rows are -1 where fewer than k exist."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {queries.shape[1]}, the index {self.dim}")
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        parts = self._search_parts(queries, k) if self.parts and k > 0 else []
        if parts:  # ties: the lower row first, as faiss; fewer than k rows: the rest stay -1 / -inf
            merged_scores, merged_rows = merge_shard_results(parts, k)
            n = merged_rows.shape[1]
            scores[:, :n], rows[:, :n] = merged_scores, merged_rows
        return scores, rows


def _exact_copy(vectors: np.ndarray, rows: torch.Tensor, rerank: Union[str, bool],
                where: str) -> Optional[torch.Tensor]:
    """The float32 rows the re-rank reads: None when it is off (`auto`: on for reduced precision);
    the stored rows themselves when they are float32; else a copy on the device or a host view."""
    if rerank is False or (rerank == "auto" and rows.dtype == torch.float32):
        return None
    if rows.dtype == torch.float32 and where == "device":
        return rows
    if where == "host":
        return torch.from_numpy(vectors)  # a view of the float32 array (no second copy); re-ranked on the CPU
    return torch.from_numpy(vectors).to(rows.device)


def top_columns(scores: torch.Tensor, c: int, group: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(values, columns) of the c largest entries of every row of `scores` (b, n), unordered.

    The max of every `group` consecutive columns, the c best groups, then the c best of their members.
    Exact in value: take x of the true top c; either x's group is chosen, or c chosen groups have maxima
    >= x's group max >= x, so the members hold c entries >= x either way. Among equal values the columns
    may differ from a full topk's. Short rows (or group 1) go straight to topk."""
    b, n = scores.shape
    if group <= 1 or n <= 2 * c * group:
        return scores.topk(c, dim=1)
    whole = n - n % group
    best = scores[:, :whole].view(b, whole // group, group).amax(2)
    if whole < n:
        best = torch.cat([best, scores[:, whole:].amax(1, keepdim=True)], 1)
    groups = best.topk(min(c, best.shape[1]), dim=1).indices
    cols = (groups.unsqueeze(2) * group + torch.arange(group, device=scores.device)).flatten(1)
    inside = cols < n  # the short last group's slots past the end
    values = scores.gather(1, cols.clamp_max(n - 1)).masked_fill(~inside, float("-inf"))
    values, pick = values.topk(c, dim=1)
    return values, cols.gather(1, pick)


def best_first(scores: torch.Tensor, rows: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The k best of each row's candidates by score, ties to the lower row: (scores, rows), each (b, k)."""
    rows, by_row = rows.sort(dim=1)
    scores, order = scores.gather(1, by_row).sort(dim=1, descending=True, stable=True)
    return scores[:, :k], rows.gather(1, order[:, :k])


def exact_top(exact_rows: torch.Tensor, q32: torch.Tensor, candidates: torch.Tensor,
              k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Re-rank: float64 inner products of float32 queries with their candidate rows (read from
    `exact_rows`, on the candidates' device), rounded to float32, the k best first, ties (equal float32
    scores, as the host merge across parts sees them) to the lower row. float64 makes each score the
    correctly rounded float32 of the exact product, independent of the matmul's blocking and device."""
    q32 = q32.to(exact_rows.device, non_blocking=True)
    candidates = candidates.to(exact_rows.device)
    step = max(1, RERANK_ELEMENTS // max(1, candidates.shape[1] * exact_rows.shape[1]))
    scores = [torch.bmm(exact_rows[candidates[b0:b0 + step]].double(), q32[b0:b0 + step].double().unsqueeze(2))
              .squeeze(2) for b0 in range(0, len(q32), step)]
    return best_first(torch.cat(scores).float(), candidates, k)


def merge_shard_results(parts: List[Tuple[np.ndarray, np.ndarray]], k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Merge per-shard (scores, global rows) into the top-k by score; ties go to the lower row."""
    scores = np.concatenate([p[0] for p in parts], axis=1)
    rows = np.concatenate([p[1] for p in parts], axis=1)
    scores = np.where(rows < 0, -np.inf, scores)
    order = np.lexsort((rows, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
