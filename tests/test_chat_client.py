"""ChatClient against a real-protocol fake server, through the real openai client."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from timewarp.generation.chat import ChatClient, ChatSettings, resolve_api_key
from timewarp.generation.engine import ChatFailure, ParseRejection
from timewarp.generation.reply_cache import ResponseCache, make_cache_key

# tests/ may or may not be a package (other modules decide); support both layouts.
try:
    from tests.chat_server import (
        ChatServer,
        Sleep,
        malformed_json,
        rate_limited,
        reply,
        server_error,
        sleep,
        status,
    )
except ImportError:  # pragma: no cover - depends on the rootdir layout
    from chat_server import (  # type: ignore  # same module under another name
        ChatServer,
        Sleep,
        malformed_json,
        rate_limited,
        reply,
        server_error,
        sleep,
        status,
    )

KEY = "sk-test-SECRET-123"
MakeClient = Callable[..., ChatClient]
KEY_ENV = "TIMEWARP_TEST_CHAT_KEY"


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def parse_int(text: str) -> int:
    # int() raises ValueError on junk, which is what generate_parsed_many retries on.
    return int(text.strip())


@pytest.fixture()
def server() -> Iterator[ChatServer]:
    with ChatServer() as srv:
        yield srv


def make_settings(server: ChatServer, **overrides: Any) -> ChatSettings:
    base: dict[str, Any] = {
        "base_url": server.base_url,
        "model": "test-model",
        "api_key_env": KEY_ENV,
        "timeout_s": 5.0,
        "max_retries": 2,
        "concurrency": 4,
    }
    base.update(overrides)
    return ChatSettings(**base)


@pytest.fixture()
def make_client(server: ChatServer) -> Iterator[MakeClient]:
    clients: list[ChatClient] = []

    def factory(cache: ResponseCache | None = None, **overrides: Any) -> ChatClient:
        client = ChatClient(make_settings(server, **overrides), cache, api_key=KEY)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


# --------------------------------------------------------------------------- #
# Basic calls and the openai client's retries
# --------------------------------------------------------------------------- #


def test_success_sends_real_request(server: ChatServer, make_client: MakeClient) -> None:
    server.enqueue(reply("Paris"))
    client = make_client(temperature=0.7, max_tokens=64, seed=11)

    [result] = client.generate_parsed_many([user("Capital of France?")], str)

    assert result == "Paris"
    (req,) = server.requests
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.body["model"] == "test-model"
    assert req.body["messages"] == user("Capital of France?")
    assert req.body["temperature"] == 0.7
    assert req.body["max_tokens"] == 64
    assert req.body["seed"] == 11
    stats = client.stats()
    assert stats["prompt_tokens"] > 0
    assert stats == {
        "requests_sent": 1, "cache_hits": 0, "retries": 0, "failures": 0,
        "prompt_tokens": stats["prompt_tokens"], "completion_tokens": 1,
    }


def test_seed_omitted_when_unset(server: ChatServer, make_client: MakeClient) -> None:
    make_client().generate_parsed_many([user("x")], str)
    assert "seed" not in server.requests[0].body


def test_rate_limit_is_retried_by_openai_client(server: ChatServer, make_client: MakeClient) -> None:
    server.enqueue(rate_limited(), reply("ok"))
    client = make_client()

    [result] = client.generate_parsed_many([user("hi")], str)

    assert result == "ok"
    reqs = server.requests
    assert len(reqs) == 2
    # The openai client numbers its own retries; one logical call was made.
    assert [r.headers.get("x-stainless-retry-count") for r in reqs] == ["0", "1"]
    assert client.stats()["requests_sent"] == 1 and client.stats()["failures"] == 0


def test_persistent_rate_limit_becomes_failure(server: ChatServer, make_client: MakeClient) -> None:
    server.enqueue(*[rate_limited() for _ in range(3)])
    [result] = make_client(max_retries=2).generate_parsed_many([user("hi")], str)
    assert isinstance(result, ChatFailure) and result.kind == "rate_limited"
    assert len(server.requests) == 3


def test_server_errors_until_give_up(server: ChatServer, make_client: MakeClient) -> None:
    max_retries = 3
    server.enqueue(*[server_error() for _ in range(10)])
    client = make_client(max_retries=max_retries)

    [result] = client.generate_parsed_many([user("hi")], str)

    assert isinstance(result, ChatFailure)
    assert result.kind == "server_error"
    assert "500" in result.error
    assert len(server.requests) == max_retries + 1
    assert client.stats()["failures"] == 1


def test_timeout_becomes_failure(server: ChatServer, make_client: MakeClient) -> None:
    server.enqueue(sleep(2.0, "too late"), sleep(2.0, "too late"))
    client = make_client(timeout_s=0.3, max_retries=1)

    start = time.monotonic()
    [result] = client.generate_parsed_many([user("slow")], str)
    elapsed = time.monotonic() - start

    assert isinstance(result, ChatFailure) and result.kind == "timeout"
    assert len(server.requests) == 2  # first try + one retry by the openai client
    assert elapsed < 2.0  # did not wait for the server


def test_bad_request_not_retried(server: ChatServer, make_client: MakeClient) -> None:
    server.enqueue(status(400, "context length exceeded"))
    [result] = make_client(max_retries=3).generate_parsed_many([user("huge")], str)
    assert isinstance(result, ChatFailure) and result.kind == "bad_request"
    assert "context length exceeded" in result.error
    assert len(server.requests) == 1


def test_malformed_json_body_becomes_failure(server: ChatServer, make_client: MakeClient, tmp_path: Path) -> None:
    # openai raises a bare json.JSONDecodeError (a ValueError!) here and does not retry.
    server.enqueue(malformed_json())
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        client = make_client(cache)
        [result] = client.generate_parsed_many([user("x")], str)
        assert isinstance(result, ChatFailure) and result.kind == "bad_response"
        assert len(cache) == 0
        assert len(server.requests) == 1

        # Inside generate_parsed_many it is an API failure, not a parse rejection to retry.
        server.enqueue(malformed_json())
        [parsed] = client.generate_parsed_many([user("y")], parse_int)
        assert isinstance(parsed, ChatFailure) and parsed.kind == "bad_response"
        assert len(server.requests) == 2


def test_connection_refused_becomes_failure() -> None:
    with socket.socket() as sock:  # find a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = ChatSettings(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout_s=2.0)
    with ChatClient(settings, api_key=KEY) as client:
        [result] = client.generate_parsed_many([user("x")], str)
    assert isinstance(result, ChatFailure) and result.kind == "connection"


def test_one_failure_does_not_stop_the_batch(server: ChatServer, make_client: MakeClient) -> None:
    def responder(messages: list[dict[str, Any]]) -> Any:
        content = messages[-1]["content"]
        return status(400, "nope") if content == "bad" else f"ok {content}"

    server.responder = responder
    results = make_client(concurrency=3).generate_parsed_many([user("a"), user("bad"), user("c")], str)
    assert [type(r) for r in results] == [str, ChatFailure, str]
    assert results[0] == "ok a" and results[2] == "ok c"


# --------------------------------------------------------------------------- #
# Parsing with retries
# --------------------------------------------------------------------------- #


def test_malformed_reply_retried_then_rejected(server: ChatServer, make_client: MakeClient, tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    client = make_client(cache)
    server.enqueue(reply("not a number"), reply("still not"), reply("nope"))

    [result] = client.generate_parsed_many([user("give me a number")], parse_int, attempts=3)

    assert isinstance(result, ParseRejection)
    assert result.reply_text == "nope"
    assert "ValueError" in result.reason
    assert len(server.requests) == 3
    assert len(cache) == 0  # malformed replies are never cached
    assert client.stats()["requests_sent"] == 3 and client.stats()["retries"] == 2

    # A re-run pays again (nothing bad was cached) and this time gets a good reply.
    server.enqueue(reply("42"))
    assert client.generate_parsed_many([user("give me a number")], parse_int) == [42]
    assert len(server.requests) == 4
    assert len(cache) == 1

    # ...which is now served from the cache.
    assert client.generate_parsed_many([user("give me a number")], parse_int) == [42]
    assert len(server.requests) == 4
    assert client.stats()["cache_hits"] == 1
    cache.close()


def test_parse_retry_succeeds_on_second_attempt(server: ChatServer, make_client: MakeClient) -> None:
    server.enqueue(reply("garbage"), reply(" 7 "))
    assert make_client().generate_parsed_many([user("n?")], parse_int) == [7]
    assert len(server.requests) == 2


def test_cached_reply_that_fails_parse_is_refetched(
    server: ChatServer, make_client: MakeClient, tmp_path: Path
) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    client = make_client(cache)
    server.enqueue(reply("free text"), reply("5"))

    assert client.generate_parsed_many([user("q")], str) == ["free text"]  # cached: it parses as text
    assert client.generate_parsed_many([user("q")], parse_int) == [5]  # cached text rejected -> fresh call
    assert len(server.requests) == 2
    assert cache.get(client.cache_key(user("q"))) == "5"  # the good reply replaced it
    cache.close()


def test_generate_parsed_many_mixes_outcomes_in_order(server: ChatServer, make_client: MakeClient) -> None:
    def responder(messages: list[dict[str, Any]]) -> Any:
        content = messages[-1]["content"]
        if content.startswith("num"):
            n = int(content[3:])
            # Reverse completion order so ordering is really tested.
            return Sleep(0.02 * (6 - n), reply(str(n * 10)))
        if content == "junk":
            return "definitely not an int"
        return server_error()

    server.responder = responder
    client = make_client(concurrency=6, max_retries=1)
    items = [user("num1"), user("junk"), user("num2"), user("boom"), user("num3")]

    results = client.generate_parsed_many(items, parse_int, attempts=2)

    assert results[0] == 10 and results[2] == 20 and results[4] == 30
    assert isinstance(results[1], ParseRejection)
    assert results[1].reply_text == "definitely not an int"
    assert isinstance(results[3], ChatFailure) and results[3].kind == "server_error"
    junk_requests = [r for r in server.requests if r.body["messages"][-1]["content"] == "junk"]
    assert len(junk_requests) == 2  # attempts=2


def test_parse_function_bug_becomes_failure(server: ChatServer, make_client: MakeClient) -> None:
    def broken(text: str) -> int:
        raise KeyError("bug in parser")

    [result] = make_client().generate_parsed_many([user("x")], broken)
    assert isinstance(result, ChatFailure) and result.kind == "error"
    assert "KeyError" in result.error


# --------------------------------------------------------------------------- #
# Cache
# --------------------------------------------------------------------------- #


def test_cache_hit_on_rerun_with_new_client(server: ChatServer, tmp_path: Path) -> None:
    path = tmp_path / "replies.sqlite"
    prompts = [user(f"question {i}") for i in range(3)]

    with ResponseCache(path) as cache, ChatClient(make_settings(server), cache, api_key=KEY) as client:
        first = client.generate_parsed_many(prompts, str)
    assert first == [f"echo: question {i}" for i in range(3)]
    assert len(server.requests) == 3

    # A fresh process would do exactly this: new cache object, new client, same file.
    with ResponseCache(path) as cache, ChatClient(make_settings(server), cache, api_key=KEY) as client:
        assert len(cache) == 3
        second = client.generate_parsed_many(prompts, str)
        assert client.stats()["requests_sent"] == 0 and client.stats()["cache_hits"] == 3
    assert second == first
    assert len(server.requests) == 3  # nothing paid twice


def test_cache_written_as_each_call_completes(server: ChatServer, tmp_path: Path) -> None:
    path = tmp_path / "replies.sqlite"

    def responder(messages: list[dict[str, Any]]) -> Any:
        return server_error() if messages[-1]["content"] == "fails" else "fine"

    server.responder = responder
    with ResponseCache(path) as cache, ChatClient(make_settings(server, max_retries=0), cache, api_key=KEY) as c:
        results = c.generate_parsed_many([user("a"), user("fails"), user("b")], str)
        assert isinstance(results[1], ChatFailure)
        # Visible to another connection immediately (no flush at the end needed).
        with ResponseCache(path) as other:
            assert len(other) == 2


def test_cache_key_depends_on_reply_parameters() -> None:
    msgs = user("q")
    base = ChatSettings()
    assert make_cache_key(msgs, base.cache_params()) == make_cache_key(msgs, ChatSettings(temperature=0).cache_params())
    for changed in (
        ChatSettings(model="other"),
        ChatSettings(temperature=0.5),
        ChatSettings(max_tokens=10),
        ChatSettings(seed=1),
    ):
        assert make_cache_key(msgs, changed.cache_params()) != make_cache_key(msgs, base.cache_params())
    # Endpoint, key variable, timeouts and retries do not change what a reply is.
    same = ChatSettings(base_url="http://x/v1", api_key_env="OTHER", timeout_s=1, max_retries=0, concurrency=1)
    assert same.cache_params() == base.cache_params()
    assert set(base.cache_params()) == {"model", "temperature", "max_tokens", "seed"}


def test_duplicate_requests_in_batch_sent_once_with_cache(server: ChatServer, tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "c.sqlite") as cache, ChatClient(make_settings(server), cache, api_key=KEY) as c:
        results = c.generate_parsed_many([user("same"), user("other"), user("same")], str)
    assert results == ["echo: same", "echo: other", "echo: same"]
    assert len(server.requests) == 2


# --------------------------------------------------------------------------- #
# Concurrency
# --------------------------------------------------------------------------- #


def test_concurrency_overlaps_requests_and_preserves_order(server: ChatServer, make_client: MakeClient) -> None:
    n, delay = 8, 0.2

    def responder(messages: list[dict[str, Any]]) -> Any:
        i = int(messages[-1]["content"])
        # Later items finish first, so input order != completion order.
        return Sleep(delay + 0.01 * (n - i), reply(f"answer {i}"))

    server.responder = responder
    client = make_client(concurrency=n)

    start = time.monotonic()
    results = client.generate_parsed_many([user(str(i)) for i in range(n)], str)
    elapsed = time.monotonic() - start

    assert results == [f"answer {i}" for i in range(n)]
    assert elapsed < n * delay / 2, f"took {elapsed:.2f}s: requests did not overlap"
    assert server.max_in_flight >= n // 2


def test_concurrency_limit_is_respected(server: ChatServer, make_client: MakeClient) -> None:
    server.responder = lambda messages: Sleep(0.05, reply("x"))
    make_client(concurrency=2).generate_parsed_many([user(str(i)) for i in range(6)], str)
    assert server.max_in_flight <= 2


# --------------------------------------------------------------------------- #
# Secrets
# --------------------------------------------------------------------------- #


def test_api_key_never_leaks(
    server: ChatServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)  # root: catches openai, httpx, httpcore and ours
    monkeypatch.setenv(KEY_ENV, KEY)
    cache_path = tmp_path / "cache.sqlite"
    cache = ResponseCache(cache_path)
    settings = make_settings(server, max_retries=1)
    client = ChatClient(settings, cache)  # key resolved from the environment

    def responder(messages: list[dict[str, Any]]) -> Any:
        content = messages[-1]["content"]
        if content == "echo-key":
            # A misbehaving proxy that echoes the credential back in its error.
            return status(400, f"invalid header Authorization: Bearer {KEY}")
        if content == "500":
            return server_error()
        if content == "junk":
            return "junk"
        return "7"

    server.responder = responder
    replies = client.generate_parsed_many([user("fine"), user("echo-key"), user("500")], str)
    parsed = client.generate_parsed_many([user("junk"), user("other")], parse_int, attempts=2)

    def assert_not_on_disk() -> None:
        files = list(tmp_path.glob("cache.sqlite*"))  # main database, WAL, shared memory
        assert files
        for path in files:
            assert KEY.encode() not in path.read_bytes(), path

    assert len(cache) == 2
    assert_not_on_disk()  # while open: replies still sit in the WAL file
    cache.close()
    client.close()
    assert_not_on_disk()  # after the WAL is checkpointed into the main file

    # The key did go out, in the header only.
    assert {r.headers["authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    assert all(KEY not in json.dumps(r.body) for r in server.requests)

    failures = [r for r in replies if isinstance(r, ChatFailure)]
    rejections = [r for r in parsed if isinstance(r, ParseRejection)]
    assert len(failures) == 2 and len(rejections) == 1
    texts = [str(x) for x in failures] + [repr(x) for x in failures] + [x.error for x in failures]
    texts += [rej.reason for rej in rejections] + [repr(rej) for rej in rejections]
    texts += [repr(settings), str(settings), repr(client), repr(cache)]
    texts += [caplog.text] + [r.getMessage() for r in caplog.records]
    for text in texts:
        assert KEY not in text, text
    assert "***" in failures[0].error  # the echoed key was scrubbed, not just absent

    assert KEY not in json.dumps(dataclasses.asdict(settings))


def test_resolve_api_key_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    remote = ChatSettings(base_url="https://api.example.com/v1", api_key_env=KEY_ENV)

    monkeypatch.setenv(KEY_ENV, KEY)
    assert resolve_api_key(remote) == KEY
    monkeypatch.delenv(KEY_ENV)

    assert resolve_api_key(remote, {KEY_ENV: KEY}.get) == KEY
    for host in ("localhost", "127.0.0.1", "[::1]"):
        local = ChatSettings(base_url=f"http://{host}:8000/v1", api_key_env=KEY_ENV)
        assert resolve_api_key(local) == "EMPTY"
    monkeypatch.setenv(KEY_ENV, "anything")  # local servers accept whatever is set
    assert resolve_api_key(ChatSettings(base_url="http://localhost:8000/v1", api_key_env=KEY_ENV)) == "anything"


def test_resolve_api_key_error_names_variable_not_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # a key elsewhere must not show up either
    settings = ChatSettings(base_url="https://api.example.com/v1", api_key_env=KEY_ENV)

    for lookup in (None, lambda name: None):
        with pytest.raises(ValueError) as info:
            resolve_api_key(settings, lookup)
        assert KEY_ENV in str(info.value)
        assert KEY not in str(info.value)

    with pytest.raises(ValueError, match=KEY_ENV):
        ChatClient(settings)  # the client resolves the key the same way


def test_settings_validation() -> None:
    with pytest.raises(ValueError):
        ChatSettings(concurrency=0)
    with pytest.raises(ValueError):
        ChatSettings(max_retries=-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ChatSettings().model = "x"  # type: ignore[misc]
