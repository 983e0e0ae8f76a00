"""A scriptable, loopback-only fake of an OpenAI-compatible chat-completions server.

Speaks the real HTTP protocol so tests exercise the official ``openai`` client
end to end (retries, timeouts, headers, JSON parsing)::

    with ChatServer(responder=lambda messages: "hi") as server:
        server.enqueue(rate_limited(), reply("ok"))
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-...")
        ...
        assert len(server.requests) == 2

Each request to ``POST /v1/chat/completions`` takes the next queued behaviour,
or, when the queue is empty, asks the ``responder`` (``messages -> text`` or a
behaviour). Every request is recorded (path, lower-cased headers, parsed body).
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "Behaviour",
    "ChatServer",
    "Malformed",
    "RecordedRequest",
    "Reply",
    "Sleep",
    "Status",
    "malformed_json",
    "rate_limited",
    "reply",
    "server_error",
    "sleep",
    "status",
]

CHAT_PATH = "/v1/chat/completions"
MAX_BODY_BYTES = 1 << 20  # bound what one request may upload
MAX_SLEEP_S = 10.0  # bound how long a scripted sleep may hold a thread
SOCKET_TIMEOUT_S = 10.0  # bound how long a stalled client may hold a thread


# --------------------------------------------------------------------------- #
# Behaviours
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Reply:
    """HTTP 200 with a well-formed chat completion whose content is ``text``."""

    text: str
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Status:
    """An error status with an OpenAI-style error body and extra ``headers``."""

    code: int
    message: str = "scripted error"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` (e.g. past the client timeout), then answer ``then``."""

    seconds: float
    then: Reply | Status | Malformed | None = None


@dataclass(frozen=True)
class Malformed:
    """HTTP 200, ``application/json``, but a body that is not valid JSON."""

    body: bytes = b'{"id": "chatcmpl-broken", "choices": [{'


Behaviour = Reply | Status | Sleep | Malformed


def reply(text: str) -> Reply:
    return Reply(text)


def rate_limited(*, retry_after_ms: int | None = 1) -> Status:
    """429 with ``Retry-After: 0``.

    openai>=1 ignores ``Retry-After: 0`` (it only honours delays > 0) and falls
    back to its ~0.5 s exponential backoff, so by default ``retry-after-ms: 1``
    is sent too, which it honours (1 ms) and which takes precedence.
    """
    headers = {"Retry-After": "0"}
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    return Status(429, "Rate limit reached (scripted)", headers)


def server_error(code: int = 500, *, retry_after_ms: int | None = 1) -> Status:
    """5xx; ``retry-after-ms`` keeps the client's backoff short in tests."""
    headers = {} if retry_after_ms is None else {"retry-after-ms": str(retry_after_ms)}
    return Status(code, "Internal server error (scripted)", headers)


def status(code: int, message: str = "scripted error", **headers: str) -> Status:
    return Status(code, message, dict(headers))


def sleep(seconds: float, text: str | None = None) -> Sleep:
    return Sleep(seconds, Reply(text) if text is not None else None)


def malformed_json() -> Malformed:
    return Malformed()


# --------------------------------------------------------------------------- #
# Server
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None if the body was not JSON
    received_at: float  # time.monotonic()


def _default_responder(messages: list[dict[str, Any]]) -> str:
    last = messages[-1].get("content", "") if messages else ""
    return f"echo: {last}"


def _completion_json(model: str, text: str, finish_reason: str, messages: list[Any]) -> dict[str, Any]:
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))
    completion_tokens = len(text.split())
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class ChatServer:
    """Threaded fake chat-completions server on 127.0.0.1 (ephemeral port)."""

    def __init__(
        self,
        responder: Callable[[list[dict[str, Any]]], str | Behaviour] | None = None,
    ) -> None:
        self.responder = responder or _default_responder
        self._queue: deque[Behaviour] = deque()
        self._records: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._in_flight = 0
        self.max_in_flight = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting -------------------------------------------------------- #

    def enqueue(self, *behaviours: Behaviour | str) -> None:
        """Queue behaviours for the next requests (a str means ``reply(str)``)."""
        with self._lock:
            self._queue.extend(Reply(b) if isinstance(b, str) else b for b in behaviours)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == CHAT_PATH]

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._records.clear()
            self.max_in_flight = 0

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("ChatServer is not running")
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}/v1"

    # -- lifecycle -------------------------------------------------------- #

    def start(self) -> ChatServer:
        if self._httpd is not None:
            return self
        handler = _make_handler(self)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True  # a stuck handler must not block interpreter exit
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="chat-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers in a scripted sleep
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- request handling (called from handler threads) ------------------- #

    def _next_behaviour(self, messages: list[dict[str, Any]]) -> Behaviour:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return self._responder_behaviour(messages)

    def _responder_behaviour(self, messages: list[dict[str, Any]]) -> Behaviour:
        outcome = self.responder(messages)
        return Reply(outcome) if isinstance(outcome, str) else outcome

    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self._records.append(record)

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


def _make_handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like real servers
        timeout = SOCKET_TIMEOUT_S
        # Without this, headers and body go out in separate small writes and
        # Nagle + delayed ACK add ~40 ms to every response.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep test output quiet

        def _send_json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
            if code == 429:
                err_type = "rate_limit_error"
            else:
                err_type = "server_error" if code >= 500 else "invalid_request_error"
            body = {"error": {"message": message, "type": err_type, "param": None, "code": None}}
            self._send_json(code, body, headers)

        def do_GET(self) -> None:
            self._error(404, f"Unknown path {self.path}")

        def do_POST(self) -> None:
            if not ipaddress.ip_address(self.client_address[0]).is_loopback:
                self._error(403, "loopback only")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self._error(413, "request body too large")
                return
            raw = self.rfile.read(length) if length > 0 else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            server._record(
                RecordedRequest(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    received_at=time.monotonic(),
                )
            )
            if self.path != CHAT_PATH:
                self._error(404, f"Unknown path {self.path}")
                return
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                self._error(400, "body must be a JSON object with a 'messages' list")
                return

            server._enter()
            try:
                behaviour = server._next_behaviour(body["messages"])
                if isinstance(behaviour, Sleep):
                    # Event.wait so that stop() releases sleepers at once.
                    if server._stopping.wait(min(behaviour.seconds, MAX_SLEEP_S)):
                        self.close_connection = True
                        return
                    # Not the queue: that belongs to the requests arriving meanwhile.
                    behaviour = behaviour.then or server._responder_behaviour(body["messages"])
                    if isinstance(behaviour, Sleep):
                        behaviour = Reply("")
                self._respond(behaviour, body)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (its timeout fired); nothing to answer.
                self.close_connection = True
            finally:
                server._leave()

        def _respond(self, behaviour: Behaviour, body: dict[str, Any]) -> None:
            if isinstance(behaviour, Reply):
                model = str(body.get("model", "unknown"))
                self._send_json(
                    200, _completion_json(model, behaviour.text, behaviour.finish_reason, body["messages"])
                )
            elif isinstance(behaviour, Status):
                self._error(behaviour.code, behaviour.message, behaviour.headers)
            elif isinstance(behaviour, Malformed):
                self._send_json(200, behaviour.body)
            else:  # pragma: no cover - guarded by the type
                raise TypeError(f"unknown behaviour {behaviour!r}")

    return Handler
