"""A tiny OpenAI-compatible chat server for tests: real HTTP on 127.0.0.1, a free port, a thread.

    with ChatStub(reply=lambda request: "Accuracy: 7") as stub:
        stub.script("question 3", [429, 500])      # the first two requests whose last message is
                                                   # "question 3" get 429 then 500, the third succeeds
        stub.delay("slow one", 2.0)                # every request for "slow one" waits 2 s first
        client = OpenAIChatClient(EndpointConfig(url=stub.url, model="stub"))
        ...
        stub.requests                              # the log: one dict per request, in arrival order

`reply(request_json) -> str` makes the reply text (default: "echo: " + the last message). The log
records the path, the Authorization header, the parsed body, the status sent and the time.
"""
from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128     # the listen backlog: 5 by default, too few for 20+ clients connecting at once


def echo_reply(request: Dict[str, Any]) -> str:
    return "echo: " + request["messages"][-1]["content"]


class ChatStub:
    """Serves POST .../chat/completions with scripted replies, failures and delays; logs every request."""

    def __init__(self, reply: Callable[[Dict[str, Any]], str] = echo_reply) -> None:
        self.reply = reply
        self.requests: List[Dict[str, Any]] = []
        self._statuses: Dict[str, Deque[int]] = defaultdict(deque)
        self._delays: Dict[str, float] = {}
        self._lock = threading.Lock()
        self._in_flight = 0
        self.max_in_flight = 0
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="chat-stub", daemon=True)

    # -- scripting
    def script(self, last_message: str, statuses: Sequence[int]) -> None:
        """The next requests whose last message is `last_message` get these HTTP statuses, in order."""
        with self._lock:
            self._statuses[last_message].extend(int(s) for s in statuses)

    def delay(self, last_message: str, seconds: float) -> None:
        """Every request whose last message is `last_message` waits `seconds` before replying."""
        with self._lock:
            self._delays[last_message] = float(seconds)

    # -- lifecycle
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "ChatStub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "ChatStub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def count(self, last_message: str) -> int:
        """How many requests arrived whose last message is `last_message`."""
        with self._lock:
            return sum(1 for r in self.requests if r["last_message"] == last_message)

    # -- serving
    def _plan(self, last_message: str) -> tuple:
        with self._lock:
            queue = self._statuses.get(last_message)
            status = queue.popleft() if queue else 200
            return status, self._delays.get(last_message, 0.0)

    def _handler_class(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:   # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length).decode("utf-8"))
                last = body["messages"][-1]["content"]
                status, delay = stub._plan(last)
                with stub._lock:
                    stub._in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub._in_flight)
                    stub.requests.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                                          "body": body, "last_message": last, "status": status,
                                          "time": time.monotonic()})
                try:
                    if delay:
                        time.sleep(delay)
                    if not self.path.endswith("/chat/completions"):
                        reply = (404, {"error": {"message": f"no route {self.path}"}})
                    elif status != 200:
                        reply = (status, {"error": {"message": f"scripted status {status}"}})
                    else:
                        reply = (200, {"id": "stub", "object": "chat.completion", "model": body.get("model"),
                                       "choices": [{"index": 0, "finish_reason": "stop",
                                                    "message": {"role": "assistant", "content": stub.reply(body)}}]})
                finally:
                    # counted out BEFORE the reply is written: a client that has the reply may send its
                    # next request at once, and must not find this one still counted (max_in_flight)
                    with stub._lock:
                        stub._in_flight -= 1
                self._send(*reply)

            def _send(self, status: int, payload: Dict[str, Any]) -> None:
                data = json.dumps(payload).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):   # the client gave up (a timeout test)
                    pass

        return Handler


def start_stub(reply: Optional[Callable[[Dict[str, Any]], str]] = None) -> ChatStub:
    """A started stub (stop it yourself, or use `with ChatStub(...)`)."""
    return ChatStub(reply or echo_reply).start()
