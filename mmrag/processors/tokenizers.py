"""Tokenizers from local folders (the LLM's own, a separate one, or the bundled 32k LLaMA one)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from mmrag.common.assets import llama_tokenizer_dir
from mmrag.common.paths import require_path


def tokenizer_dir(cfg: Dict[str, Any]) -> Path:
    """The folder `model.llm` names for its tokenizer: `tokenizer_path`, else `path`, else the bundled one."""
    if cfg.get("tokenizer_path"):
        return require_path("model.llm.tokenizer_path", cfg["tokenizer_path"], "tokenizer folder")
    if cfg.get("path"):
        return require_path("model.llm.path", cfg["path"], "HF model folder")
    return llama_tokenizer_dir()


def load_tokenizer(cfg: Dict[str, Any]):
    """The tokenizer of `model.llm` (never from a hub), with a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir(cfg)))
    if tokenizer.pad_token_id is None:  # LLaMA ships without a pad token; padding is masked anyway
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


@dataclass(frozen=True)
class TokenIds:
    """What the model needs to know of its tokenizer: the vocabulary size (a random LLM's embedding
    rows) and the ids generation pads and stops with."""

    vocab_size: int
    pad_token_id: Optional[int]
    eos_token_id: Optional[int]

    @classmethod
    def of(cls, tokenizer) -> "TokenIds":
        return cls(len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)


@functools.lru_cache(maxsize=8)
def _token_ids_at(folder: str) -> TokenIds:
    return TokenIds.of(load_tokenizer({"tokenizer_path": folder}))


def token_ids(cfg: Dict[str, Any]) -> TokenIds:
    """TokenIds of `model.llm`'s tokenizer (cached per folder: the model and the processor both ask)."""
    return _token_ids_at(str(tokenizer_dir(cfg)))
