"""Text generation from a local HF causal LM behind the `ChatBackend` protocol, and the backend builder.

`LocalChatModel` loads a causal-LM folder (e.g. assets/smollm2-135m-instruct, prepared by
`mmrag-prepare-assets smollm2`), renders each conversation with the folder's chat template, and
generates in batches with left padding (so every prompt ends at the same position and new tokens
line up). Greedy at temperature 0, sampled above it (seeded, so a rerun repeats). An optional reply
cache (the HTTP client's, keyed the same way) makes reruns free.

`build_chat_backend(cfg)` returns a local model or an OpenAI-compatible client from one config dict:
    {type: local, path: assets/smollm2-135m-instruct, batch_size: 8, ...}
    {type: openai, url: http://127.0.0.1:8000/v1, model: my-model, api_key_env: MY_KEY, ...}
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch

from mmrag.common.chat_client import (ChatBackend, ChatResult, Conversation, EndpointConfig, OpenAIChatClient,
                                      ReplyCache, complete_with_cache)
from mmrag.common.config import check_against_defaults, plain
from mmrag.common.errors import ConfigError, MissingPathError, UnknownNameError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

LOCAL_DEFAULTS: Dict[str, Any] = {
    "type": "local",
    "path": None,            # a local HF causal-LM folder (config.json, weights, tokenizer, chat template)
    "batch_size": 8,         # conversations per generate() call
    "device": "cpu",
    "dtype": "float32",
    "seed": 0,               # for sampled generation (temperature > 0)
    "cache_dir": None,       # on-disk reply cache; None: no cache
}
OPENAI_DEFAULTS: Dict[str, Any] = {
    "type": "openai",
    "url": None,
    "model": None,
    "api_key_env": None,
    "timeout_s": 60.0,
    "max_retries": 5,
    "backoff_s": 1.0,
    "concurrency": 8,
    "cache_dir": None,
}
BACKEND_DEFAULTS = {"local": LOCAL_DEFAULTS, "openai": OPENAI_DEFAULTS}


class LocalChatModel:
    """`ChatBackend` over a local HF causal LM: chat template, batched left-padded generation."""

    def __init__(self, path: str | Path, batch_size: int = 8, device: str = "cpu", dtype: str = "float32",
                 seed: int = 0, cache_dir: Optional[str] = None, config_key: str = "path") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = Path(str(path or "")).expanduser()
        if not path or not (folder / "config.json").is_file():
            raise MissingPathError(
                f"config key '{config_key}': {folder} is not a local HF causal-LM folder (no config.json there); "
                "for SmolLM2 run `mmrag-prepare-assets smollm2` (nothing is downloaded from a hub)")
        if dtype not in DTYPES:
            raise ConfigError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size should be >= 1, got {batch_size!r}")
        self.path = folder
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.seed = int(seed)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not getattr(self.tokenizer, "chat_template", None):
            raise MissingPathError(f"config key '{config_key}': {folder} has no chat template "
                                   "(chat_template.jinja or tokenizer_config.json 'chat_template')")
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=DTYPES[dtype], local_files_only=True)
        self.model.to(self.device).eval()
        self.cache = ReplyCache(cache_dir) if cache_dir else None

    @property
    def model_id(self) -> str:
        return f"local:{self.path.resolve()}"

    def prompt_text(self, conversation: Conversation) -> str:
        """The conversation rendered by the folder's chat template, ending where the assistant starts.

        A conversation whose last message is the assistant's is a prefilled reply: the model continues
        that text ("Relevancy:" -> " 7"), and the result holds the continuation only."""
        messages = [dict(m) for m in conversation]
        prefill = messages.pop()["content"] if messages and messages[-1].get("role") == "assistant" else ""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefill

    def complete(self, conversations: Sequence[Conversation], max_tokens: int = 256,
                 temperature: float = 0.0) -> List[ChatResult]:
        """One result per conversation, in input order; generated in batches of similar prompt length,
        each batch cached as soon as it is done."""
        if not conversations:
            return []
        self._calls = 0
        return complete_with_cache(conversations, self.cache, self.model_id, max_tokens, temperature,
                                   lambda convs: self._generate(convs, max_tokens, temperature),
                                   chunk_size=self.batch_size, sort_key=lambda conv: len(self.prompt_text(conv)))

    def _generate(self, conversations: List[Conversation], max_tokens: int, temperature: float) -> List[ChatResult]:
        """One batch (left-padded); sampling is seeded per batch so a rerun repeats."""
        self._calls += 1
        texts = self._generate_batch([self.prompt_text(c) for c in conversations], max_tokens, temperature,
                                     self.seed + self._calls)
        return [ChatResult(text=t, error=None) for t in texts]

    @torch.no_grad()
    def _generate_batch(self, prompts: List[str], max_tokens: int, temperature: float, seed: int) -> List[str]:
        # The chat template already holds the special tokens: add none.
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampling = float(temperature) > 0
        if sampling:
            torch.manual_seed(seed)
        kwargs = {"do_sample": True, "temperature": float(temperature), "top_p": 1.0, "top_k": 0} if sampling \
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        out = self.model.generate(**enc, max_new_tokens=int(max_tokens), pad_token_id=self.tokenizer.pad_token_id,
                                  **kwargs)
        new_tokens = out[:, enc["input_ids"].shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


    @torch.no_grad()
    def zero_to_ten_distribution(self, conversations: Sequence[Conversation]) -> List[Dict[str, Any]]:
        """The model's probability of each whole number 0-10 as the continuation of each conversation
        (which ends in a prefilled reply such as "Relevancy: "), read from its logits, not its text.

        Digits are single tokens here (checked): P(d) for d != 1 is the first token's probability, and
        "1" splits into 1 and 10 by one more step with the KV cache: P(10) = P("1") P("0" | "1").
        Returns per conversation {"probs": [p0..p10] normalised, "mass": the share of the first
        token's probability on digits (how much the model meant to write a number at all)}."""
        digits = [self.tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]
        if any(not isinstance(t, int) or t < 0 or self.tokenizer.decode([t]).strip() != str(d)
               for d, t in enumerate(digits)):
            raise ConfigError(f"{self.path}: the tokenizer has no single token per digit; "
                              "zero_to_ten_distribution needs one")
        def batch(convs: List[Conversation]) -> List[ChatResult]:
            dists = self._zero_to_ten_batch([self.prompt_text(c) for c in convs], digits)
            return [ChatResult(text=json.dumps(d), error=None) for d in dists]

        # cached like replies (the distribution as JSON text), under a key of its own
        results = complete_with_cache(conversations, self.cache, self.model_id + ":zero_to_ten", 0, 0.0, batch,
                                      chunk_size=self.batch_size, sort_key=lambda conv: len(self.prompt_text(conv)))
        return [json.loads(r.text) for r in results]

    def _zero_to_ten_batch(self, prompts: List[str], digits: List[int]) -> List[Dict[str, Any]]:
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        mask = enc["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)      # left padding: real tokens count from 0
        first = self.model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions, use_cache=True)
        p_first = first.logits[:, -1].float().softmax(-1)
        one = torch.full((len(prompts), 1), digits[1], dtype=enc["input_ids"].dtype, device=self.device)
        second = self.model(input_ids=one, attention_mask=torch.cat([mask, torch.ones_like(one)], dim=1),
                            position_ids=mask.sum(-1, keepdim=True), past_key_values=first.past_key_values)
        p_zero_after_one = second.logits[:, -1].float().softmax(-1)[:, digits[0]]
        results = []
        for row in range(len(prompts)):
            p = [float(p_first[row, t]) for t in digits]
            ten = p[1] * float(p_zero_after_one[row])
            probs = p[:1] + [p[1] - ten] + p[2:] + [ten]
            mass = sum(p)
            results.append({"probs": [v / mass if mass > 0 else 0.0 for v in probs], "mass": mass})
        return results


def _validated(cfg: Mapping[str, Any], where: str) -> Dict[str, Any]:
    cfg = dict(plain(cfg) or {})
    kind = cfg.get("type")
    if kind not in BACKEND_DEFAULTS:
        raise UnknownNameError(f"{where}.type is {kind!r}; known chat backends: {', '.join(sorted(BACKEND_DEFAULTS))}")
    check_against_defaults(cfg, BACKEND_DEFAULTS[kind], where, None)
    return {**BACKEND_DEFAULTS[kind], **cfg}


def build_chat_backend(cfg: Mapping[str, Any], where: str = "backend") -> ChatBackend:
    """A `LocalChatModel` ({type: local, path, ...}) or an `OpenAIChatClient` ({type: openai, url, model, ...}).

    `where` is the config key the dict came from, used in error messages (e.g. "judge.backend").
    """
    cfg = _validated(cfg, where)
    if cfg["type"] == "local":
        return LocalChatModel(cfg["path"], batch_size=cfg["batch_size"], device=cfg["device"], dtype=cfg["dtype"],
                              seed=cfg["seed"], cache_dir=cfg["cache_dir"], config_key=f"{where}.path")
    for key in ("url", "model"):
        if not cfg[key]:
            raise ConfigError(f"config key '{where}.{key}' is empty: an openai backend needs url and model")
    fields = {k: cfg[k] for k in OPENAI_DEFAULTS if k != "type"}
    return OpenAIChatClient(EndpointConfig(**fields))
