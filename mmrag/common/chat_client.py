"""Chat-completion backends: the protocol every text generator answers, and an OpenAI-compatible HTTP client.

A backend turns a list of conversations (each a list of {"role", "content"} messages) into one
`ChatResult` per conversation, in input order. A failure never raises mid-batch: it becomes a result
whose `error` names the cause (HTTP status, timeout, malformed reply) so the caller can count it and
report it against the item. `LocalChatModel` (mmrag.models.text_generator) answers the same protocol.

`OpenAIChatClient` posts to `{url}/chat/completions`, retries 429, 5xx, timeouts and dropped
connections with exponential backoff, keeps at most `concurrency` requests in flight, and stores every
successful reply in an on-disk cache keyed by the sha256 of (model, messages, max_tokens, temperature).
Each reply is written (atomically) as soon as it arrives, so a killed run resumes where it stopped and
a rerun of the same requests sends nothing. Standard library only (urllib + concurrent.futures).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Protocol, Sequence, runtime_checkable

from mmrag.common.errors import ConfigError

Conversation = List[Dict[str, str]]
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 60.0        # cap of one wait between attempts, whatever the attempt number


@dataclass(frozen=True)
class ChatResult:
    """One conversation's reply: `text` on success, else `error` (one line naming the cause)."""

    text: Optional[str]
    error: Optional[str]
    cached: bool = False
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


@runtime_checkable
class ChatBackend(Protocol):
    def complete(self, conversations: Sequence[Conversation], max_tokens: int = 256,
                 temperature: float = 0.0) -> List[ChatResult]:
        """One result per conversation, in input order."""
        ...


# ----------------------------------------------------------------------------- cache
def cache_key(model: str, messages: Conversation, max_tokens: int, temperature: float) -> str:
    """sha256 of the request's content (canonical JSON), independent of dict order and whitespace."""
    payload = json.dumps({"model": model, "messages": [dict(m) for m in messages], "max_tokens": int(max_tokens),
                          "temperature": float(temperature)}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ReplyCache:
    """Successful replies on disk, one small JSON file per request key (`<dir>/<key[:2]>/<key>.json`).

    Writes go to a temporary file in the same folder, then `os.replace`: a reader sees either no file
    or a complete one, even if the writer is killed. Errors are never cached, so a rerun retries them.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> Optional[str]:
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))["text"]
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):   # a damaged entry is a miss, rewritten on success
            return None

    def put(self, key: str, text: str, model: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"text": text, "model": model}, handle, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def complete_with_cache(conversations: Sequence[Conversation], cache: Optional[ReplyCache], model: str,
                        max_tokens: int, temperature: float,
                        generate: Callable[[List[Conversation]], List[ChatResult]], chunk_size: int = 0,
                        sort_key: Optional[Callable[[Conversation], int]] = None) -> List[ChatResult]:
    """Serve cache hits, call `generate` on the misses only, store its successes; results in input order.

    For backends that generate a batch at once (the local model): misses are ordered by `sort_key`
    (e.g. prompt length, so a batch pads little) and generated `chunk_size` at a time (0: all at once),
    each chunk cached as soon as it is done, so a killed run loses one chunk at most.
    """
    results: List[Optional[ChatResult]] = [None] * len(conversations)
    keys = [cache_key(model, conv, max_tokens, temperature) for conv in conversations]
    misses = []
    for i, key in enumerate(keys):
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            results[i] = ChatResult(text=hit, error=None, cached=True, attempts=0)
        else:
            misses.append(i)
    if sort_key is not None:
        misses.sort(key=lambda i: sort_key(conversations[i]))
    step = chunk_size if chunk_size > 0 else max(1, len(misses))
    for start in range(0, len(misses), step):
        chunk = misses[start:start + step]
        for i, result in zip(chunk, generate([conversations[i] for i in chunk])):
            results[i] = result
            if cache is not None and result.ok:
                cache.put(keys[i], result.text, model)
    return list(results)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- HTTP client
@dataclass
class EndpointConfig:
    """Where and how to reach an OpenAI-compatible server (vLLM, llama.cpp server, OpenAI, ...)."""

    url: str                           # base URL, e.g. http://127.0.0.1:8000/v1 (".../chat/completions" is added)
    model: str                         # the model name the server expects
    api_key_env: Optional[str] = None  # name of the environment variable holding the key (never the key itself)
    timeout_s: float = 60.0            # per request
    max_retries: int = 5               # retries after the first attempt (429, 5xx, timeouts, dropped connections)
    backoff_s: float = 1.0             # first wait; doubles each retry, capped at MAX_BACKOFF_S
    concurrency: int = 8               # requests in flight at once
    cache_dir: Optional[str] = None    # on-disk reply cache; None: no cache

    def __post_init__(self) -> None:
        if not self.url or not str(self.url).startswith(("http://", "https://")):
            raise ConfigError(f"endpoint url {self.url!r} should start with http:// or https://")
        if not self.model:
            raise ConfigError("endpoint model is empty: set it to the model name the server serves")
        for name in ("timeout_s", "backoff_s"):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"endpoint {name} should be >= 0, got {getattr(self, name)!r}")
        if int(self.max_retries) < 0:
            raise ConfigError(f"endpoint max_retries should be >= 0, got {self.max_retries!r}")
        if int(self.concurrency) < 1:
            raise ConfigError(f"endpoint concurrency should be >= 1, got {self.concurrency!r}")


class _Retryable(Exception):
    """A failure worth another attempt; `retry_after` is the server's hint in seconds, if any."""

    def __init__(self, message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Fatal(Exception):
    """A failure another attempt would not fix (4xx other than 408/409/429, malformed reply)."""


def _retry_after(headers) -> Optional[float]:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _reply_text(body: bytes) -> str:
    """The first choice's message content of an OpenAI chat-completion reply."""
    try:
        reply = json.loads(body.decode("utf-8"))
        content = reply["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise _Fatal(f"malformed reply (no choices[0].message.content): {body[:120]!r}") from exc
    if not isinstance(content, str):
        raise _Fatal(f"malformed reply: content is {type(content).__name__}, expected a string")
    return content


class OpenAIChatClient:
    """`ChatBackend` over HTTP: POST {url}/chat/completions, retries with backoff, concurrency limit, cache."""

    def __init__(self, config: EndpointConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        self._api_key = None
        if config.api_key_env:
            self._api_key = os.environ.get(config.api_key_env)
            if not self._api_key:
                raise ConfigError(f"endpoint api_key_env names the environment variable '{config.api_key_env}', "
                                  "which is unset or empty: export it before the run")
        self.cache = ReplyCache(config.cache_dir) if config.cache_dir else None
        self.endpoint = config.url.rstrip("/") + "/chat/completions"

    @property
    def model_id(self) -> str:
        return f"openai:{self.config.model}@{self.config.url}"

    def complete(self, conversations: Sequence[Conversation], max_tokens: int = 256,
                 temperature: float = 0.0) -> List[ChatResult]:
        """One result per conversation, in input order; cached replies are served without a request."""
        if not conversations:
            return []
        workers = min(int(self.config.concurrency), len(conversations))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chat") as pool:
            futures = [pool.submit(self._complete_one, conv, max_tokens, temperature) for conv in conversations]
            return [future.result() for future in futures]

    def _complete_one(self, messages: Conversation, max_tokens: int, temperature: float) -> ChatResult:
        key = cache_key(self.config.model, messages, max_tokens, temperature)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return ChatResult(text=hit, error=None, cached=True, attempts=0)
        result = self._request_with_retries(messages, max_tokens, temperature)
        if self.cache is not None and result.ok:
            self.cache.put(key, result.text, self.config.model)
        return result

    def _request_with_retries(self, messages: Conversation, max_tokens: int, temperature: float) -> ChatResult:
        body = json.dumps({"model": self.config.model, "messages": [dict(m) for m in messages],
                           "max_tokens": int(max_tokens), "temperature": float(temperature)}).encode("utf-8")
        attempts = 0
        while True:
            attempts += 1
            try:
                return ChatResult(text=self._post(body), error=None, attempts=attempts)
            except _Fatal as exc:
                return ChatResult(text=None, error=str(exc), attempts=attempts)
            except _Retryable as exc:
                if attempts > int(self.config.max_retries):
                    return ChatResult(text=None, error=f"{exc} (gave up after {attempts} attempts)", attempts=attempts)
                wait = min(MAX_BACKOFF_S, float(self.config.backoff_s) * 2 ** (attempts - 1))
                if exc.retry_after is not None:
                    wait = min(MAX_BACKOFF_S, max(wait, exc.retry_after))
                self._sleep(wait)

    def _post(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=float(self.config.timeout_s)) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace") if exc.fp is not None else ""
            message = f"HTTP {exc.code} from {self.endpoint}: {detail.strip()}"
            if exc.code in RETRY_STATUSES or exc.code >= 500:
                raise _Retryable(message, _retry_after(exc.headers)) from exc
            raise _Fatal(message) from exc
        except (socket.timeout, TimeoutError) as exc:
            raise _Retryable(f"timeout after {self.config.timeout_s} s from {self.endpoint}") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (socket.timeout, TimeoutError)):
                raise _Retryable(f"timeout after {self.config.timeout_s} s from {self.endpoint}") from exc
            raise _Retryable(f"connection failed to {self.endpoint}: {exc.reason}") from exc
        except (ConnectionError, http.client.HTTPException) as exc:
            raise _Retryable(f"connection dropped by {self.endpoint}: {exc!r}") from exc
        return _reply_text(payload)

