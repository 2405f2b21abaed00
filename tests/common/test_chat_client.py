"""The OpenAI-compatible client against a real local HTTP server (tests/helpers/chat_stub.py)."""
from __future__ import annotations

import json
import threading

import pytest

from mmrag.common.chat_client import ChatBackend, EndpointConfig, OpenAIChatClient, ReplyCache, cache_key
from mmrag.common.errors import ConfigError
from tests.helpers.chat_stub import ChatStub


def conv(text: str):
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def client(stub: ChatStub, tmp_path=None, **kw) -> OpenAIChatClient:
    waits = kw.pop("waits", None)
    cfg = EndpointConfig(url=stub.url, model="stub-model", backoff_s=kw.pop("backoff_s", 0.01),
                         cache_dir=str(tmp_path / "cache") if tmp_path is not None else None, **kw)
    return OpenAIChatClient(cfg, sleep=(waits.append if waits is not None else lambda s: None))


def test_is_a_chat_backend():
    with ChatStub() as stub:
        assert isinstance(client(stub), ChatBackend)


def test_concurrent_requests_none_lost_or_duplicated_in_order():
    # 40 requests, 20 in flight; a small delay on each keeps them overlapping at the server.
    with ChatStub() as stub:
        questions = [f"q{i}" for i in range(40)]
        for q in questions:
            stub.delay(q, 0.05)
        results = client(stub, concurrency=20).complete([conv(q) for q in questions], max_tokens=5)
        assert [r.text for r in results] == [f"echo: {q}" for q in questions]
        assert all(r.error is None and r.attempts == 1 for r in results)
        assert sorted(r["last_message"] for r in stub.requests) == sorted(questions)   # each sent exactly once
        assert stub.max_in_flight >= 10        # concurrency really happened (20 allowed)
        assert stub.max_in_flight <= 20        # and the limit held


def test_request_body_and_auth_header(monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-test-123")
    with ChatStub() as stub:
        c = OpenAIChatClient(EndpointConfig(url=stub.url + "/", model="m1", api_key_env="STUB_KEY"))
        [result] = c.complete([conv("hi")], max_tokens=7, temperature=0.5)
        assert result.text == "echo: hi"
        [req] = stub.requests
        assert req["path"] == "/v1/chat/completions"
        assert req["authorization"] == "Bearer sk-test-123"
        assert req["body"] == {"model": "m1", "messages": conv("hi"), "max_tokens": 7, "temperature": 0.5}


def test_missing_api_key_env_is_a_config_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR"):
        OpenAIChatClient(EndpointConfig(url="http://127.0.0.1:9/v1", model="m", api_key_env="NO_SUCH_KEY_VAR"))


@pytest.mark.parametrize("bad", [dict(url="localhost:8000"), dict(model=""), dict(concurrency=0),
                                 dict(max_retries=-1)])
def test_bad_endpoint_config(bad):
    with pytest.raises(ConfigError):
        EndpointConfig(**{"url": "http://x/v1", "model": "m", **bad})


def test_retries_with_exponential_backoff_then_success():
    with ChatStub() as stub:
        stub.script("flaky", [429, 500, 503])
        waits = []
        [ok, other] = client(stub, max_retries=5, backoff_s=0.5, waits=waits).complete([conv("flaky"), conv("fine")])
        assert ok.text == "echo: flaky" and ok.error is None and ok.attempts == 4
        assert other.text == "echo: fine" and other.attempts == 1
        assert waits == [0.5, 1.0, 2.0]          # hand-worked: 0.5 * 2**k for the three failures
        assert stub.count("flaky") == 4


def test_retries_exhausted_gives_an_error_result_not_an_exception():
    with ChatStub() as stub:
        stub.script("down", [500, 500, 500])
        [bad, good] = client(stub, max_retries=2).complete([conv("down"), conv("up")])
        assert bad.text is None and "HTTP 500" in bad.error and "3 attempts" in bad.error and bad.attempts == 3
        assert good.text == "echo: up"
        assert stub.count("down") == 3


def test_client_errors_are_not_retried():
    with ChatStub() as stub:
        stub.script("bad request", [400])
        [r] = client(stub, max_retries=5).complete([conv("bad request")])
        assert r.error.startswith("HTTP 400") and r.attempts == 1 and stub.count("bad request") == 1


def test_timeout_is_retried():
    with ChatStub() as stub:
        stub.delay("slow", 1.0)
        [r] = client(stub, timeout_s=0.2, max_retries=1).complete([conv("slow")])
        assert r.text is None and "timeout" in r.error and r.attempts == 2
        assert stub.count("slow") == 2


def test_cache_hit_on_rerun_sends_nothing(tmp_path):
    with ChatStub() as stub:
        convs = [conv(f"c{i}") for i in range(6)]
        first = client(stub, tmp_path).complete(convs, max_tokens=4)
        assert len(stub.requests) == 6 and not any(r.cached for r in first)
        again = client(stub, tmp_path).complete(convs, max_tokens=4)
        assert len(stub.requests) == 6                     # nothing new sent
        assert [r.text for r in again] == [r.text for r in first] and all(r.cached for r in again)
        # another max_tokens is another request
        client(stub, tmp_path).complete(convs[:1], max_tokens=5)
        assert len(stub.requests) == 7


def test_errors_are_not_cached(tmp_path):
    with ChatStub() as stub:
        stub.script("x", [500, 500])
        [r] = client(stub, tmp_path, max_retries=1).complete([conv("x")])
        assert r.error is not None
        [r] = client(stub, tmp_path, max_retries=1).complete([conv("x")])
        assert r.text == "echo: x" and not r.cached and stub.count("x") == 3


def test_resume_after_a_partial_run(tmp_path):
    """A run killed half way leaves complete cache entries for what it finished; the rerun sends only the rest."""
    convs = [conv(f"r{i}") for i in range(10)]
    with ChatStub() as stub:
        client(stub, tmp_path).complete(convs[:4])              # the part that finished before the kill
        # a writer killed mid-write leaves only a temporary file, never a truncated entry
        stray = tmp_path / "cache" / "ab" / ".abcdef12.x.tmp"
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_text('{"text": "trunc')
        results = client(stub, tmp_path).complete(convs)
        assert [r.text for r in results] == [f"echo: r{i}" for i in range(10)]
        assert [r.cached for r in results] == [True] * 4 + [False] * 6
        assert sorted(r["last_message"] for r in stub.requests) == sorted(f"r{i}" for i in range(10))


def test_cache_key_is_canonical_and_sensitive():
    a = cache_key("m", [{"role": "user", "content": "x"}], 5, 0.0)
    assert a == cache_key("m", [{"content": "x", "role": "user"}], 5, 0)     # dict order, int vs float
    assert len({a, cache_key("m2", [{"role": "user", "content": "x"}], 5, 0.0),
                cache_key("m", [{"role": "user", "content": "y"}], 5, 0.0),
                cache_key("m", [{"role": "user", "content": "x"}], 6, 0.0),
                cache_key("m", [{"role": "user", "content": "x"}], 5, 0.1)}) == 5


def test_damaged_cache_entry_is_a_miss(tmp_path):
    cache = ReplyCache(tmp_path)
    cache.put("ff" + "0" * 62, "hello", "m")
    assert cache.get("ff" + "0" * 62) == "hello"
    (tmp_path / "ff" / ("ff" + "0" * 62 + ".json")).write_text("{not json")
    assert cache.get("ff" + "0" * 62) is None


def test_malformed_reply_is_an_error_result():
    with ChatStub(reply=lambda body: None) as stub:      # content null
        [r] = client(stub).complete([conv("?")])
        assert r.text is None and "malformed reply" in r.error


def test_unreachable_server_is_an_error_result():
    with ChatStub() as stub:
        url = stub.url
    c = OpenAIChatClient(EndpointConfig(url=url, model="m", max_retries=1, backoff_s=0.0, timeout_s=2.0))
    [r] = c.complete([conv("anyone?")])
    assert r.text is None and r.attempts == 2 and "connection" in r.error


def test_same_conversation_twice_in_one_batch_keeps_both_slots():
    with ChatStub() as stub:
        results = client(stub).complete([conv("dup"), conv("other"), conv("dup")])
        assert [r.text for r in results] == ["echo: dup", "echo: other", "echo: dup"]


def test_stub_handles_threads_safely():
    # the stub's own log under concurrent clients (it is the oracle of the tests above)
    with ChatStub() as stub:
        threads = [threading.Thread(target=client(stub).complete, args=([conv(f"t{i}")],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r["last_message"] for r in stub.requests) == sorted(f"t{i}" for i in range(8))
        assert json.dumps(stub.requests[0]["body"])  # the log holds plain JSON


def test_batched_backend_caches_each_chunk_so_a_killed_run_resumes(tmp_path):
    """complete_with_cache (the local model's path): chunks are cached as they finish; a kill in the
    third chunk keeps the first two, and the rerun generates only what is missing, results in order."""
    from mmrag.common.chat_client import ChatResult, complete_with_cache

    convs = [[{"role": "user", "content": "x" * n}] for n in (5, 1, 4, 2, 6, 3)]
    calls = []

    def generate(batch, fail_on=None):
        calls.append([c[0]["content"] for c in batch])
        if len(calls) == fail_on:
            raise KeyboardInterrupt("killed")
        return [ChatResult(text=f"len {len(c[0]['content'])}", error=None) for c in batch]

    cache = ReplyCache(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        complete_with_cache(convs, cache, "m", 8, 0.0, lambda b: generate(b, fail_on=3), chunk_size=2,
                            sort_key=lambda c: len(c[0]["content"]))
    assert calls == [["x", "xx"], ["xxx", "xxxx"], ["xxxxx", "xxxxxx"]]     # shortest first, two at a time
    calls.clear()
    results = complete_with_cache(convs, cache, "m", 8, 0.0, generate, chunk_size=2,
                                  sort_key=lambda c: len(c[0]["content"]))
    assert calls == [["xxxxx", "xxxxxx"]]
    assert [r.text for r in results] == [f"len {n}" for n in (5, 1, 4, 2, 6, 3)]
    assert [r.cached for r in results] == [False, True, True, True, False, True]
