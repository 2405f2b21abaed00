"""Exact inner-product top-k in torch: the dense database's `backend: torch`.

Why: faiss-gpu cannot be installed on the project's GPU machine (its CUDA 13 build with cuVS is an
81 MB wheel plus the cuVS libraries), and exact search is a matmul and a top-k, which torch does at
the GPU's speed. The rows are split evenly over the given devices (every visible GPU by default, else
the CPU); each device scores a block of queries against its rows chunk by chunk, keeps a running
top-k, and the per-device results are merged on the host. bf16 on GPUs (scores accumulated in fp32
by the matmul), fp32 on the CPU, where the results equal faiss `Flat` (tested).

`TorchExactIndex` answers `search(queries, k) -> (scores, rows)` and `ntotal` like a faiss index, so
`DenseIndex.raw_search` treats both alike.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_devices() -> List[str]:
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]


class TorchExactIndex:
    def __init__(self, vectors: np.ndarray, devices: Optional[Sequence[str]] = None, dtype: str = "auto",
                 query_block: int = 8192, row_chunk: int = 1 << 20) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        self.ntotal, self.dim = int(vectors.shape[0]), int(vectors.shape[1])
        self.query_block, self.row_chunk = int(query_block), int(row_chunk)
        devices = list(devices or default_devices())
        bounds = np.linspace(0, self.ntotal, len(devices) + 1).astype(int)
        self.parts: List[Tuple[int, torch.Tensor]] = []
        for device, start, stop in zip(devices, bounds[:-1], bounds[1:]):
            if stop > start:
                want = DTYPES[dtype] or (torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16)
                self.parts.append((int(start), torch.from_numpy(vectors[start:stop]).to(device, want)))

    def _topk_block(self, rows: torch.Tensor, q: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Top-k of one device's rows for one query block, left on that device (no host sync):
        (scores float32, local rows int64), each (len(q), min(k, rows))."""
        k = min(k, rows.shape[0])
        best_s = best_r = None
        for r0 in range(0, rows.shape[0], self.row_chunk):
            scores = (q @ rows[r0:r0 + self.row_chunk].T).float()
            s, r = scores.topk(min(k, scores.shape[1]), dim=1)
            r = r + r0
            if best_s is not None:
                s, r = torch.cat([best_s, s], 1), torch.cat([best_r, r], 1)
                s, pick = s.topk(k, dim=1)
                r = r.gather(1, pick)
            best_s, best_r = s, r
        return best_s, best_r

    def _search_parts(self, queries: np.ndarray, k: int) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Per device part: (scores, global rows) of every query. Each query block is queued on every
        device before any result is read back, so the devices work at the same time."""
        host = torch.from_numpy(queries)
        per_part: List[Tuple[List[np.ndarray], List[np.ndarray]]] = [([], []) for _ in self.parts]
        pin = any(part.device.type == "cuda" for _, part in self.parts)
        for q0 in range(0, len(queries), self.query_block):
            block = host[q0:q0 + self.query_block]
            if pin:
                block = block.pin_memory()
            queued = [self._topk_block(part, block.to(part.device, part.dtype, non_blocking=True), k)
                      for _, part in self.parts]
            for (offset, _), (s, r), (out_s, out_r) in zip(self.parts, queued, per_part):
                out_s.append(s.cpu().numpy())
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
        parts = self._search_parts(queries, k) if self.parts else []
        if parts:  # ties: the lower row first, as faiss; fewer than k rows: the rest stay -1 / -inf
            merged_scores, merged_rows = merge_shard_results(parts, k)
            n = merged_rows.shape[1]
            scores[:, :n], rows[:, :n] = merged_scores, merged_rows
        return scores, rows


def merge_shard_results(parts: List[Tuple[np.ndarray, np.ndarray]], k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Merge per-shard (scores, global rows) into the top-k by score; ties go to the lower row."""
    scores = np.concatenate([p[0] for p in parts], axis=1)
    rows = np.concatenate([p[1] for p in parts], axis=1)
    scores = np.where(rows < 0, -np.inf, scores)
    order = np.lexsort((rows, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
