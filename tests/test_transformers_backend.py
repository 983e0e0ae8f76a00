"""The local transformers chat engine, on a tiny random-weight model built offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from timewarp.generation.engine import ChatFailure, ParseRejection  # noqa: E402
from timewarp.generation.reply_cache import ResponseCache  # noqa: E402
from timewarp.generation.transformers_backend import (  # noqa: E402
    RETRY_TEMPERATURE,
    LocalChatModel,
    LocalLMSettings,
)
from timewarp.models.tiny_tokenizer import EOS_TOKEN, PAD_TOKEN  # noqa: E402
from tiny_text_lm import make_tiny_chat_lm  # noqa: E402

MAX_NEW_TOKENS = 8


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_chat_lm(tmp_path_factory.mktemp("tiny-chat-lm"), seed=0)


def _settings(model_dir: Path, **overrides: object) -> LocalLMSettings:
    # CPU float32 even where a GPU exists: bfloat16 rounding could break batched == one-by-one.
    values: dict[str, object] = {
        "model": str(model_dir),
        "max_new_tokens": MAX_NEW_TOKENS,
        "batch_size": 3,
        "device": "cpu",
    }
    values.update(overrides)
    return LocalLMSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def engine(tiny_lm: Path) -> LocalChatModel:
    """One loaded engine for the read-only tests (assert counter deltas, not totals)."""
    model = LocalChatModel(_settings(tiny_lm))
    model.load()
    return model


def _requests(word_counts: tuple[int, ...] = (1, 7, 3, 12, 5, 2, 9)) -> list[list[dict[str, str]]]:
    """Conversations of clearly different token lengths (7 > batch_size 3)."""
    return [
        [
            {"role": "system", "content": "You write temporal questions."},
            {"role": "user", "content": f"Scene {n}: " + " ".join(["the man walks"] * n)},
        ]
        for n in word_counts
    ]


def _always_reject(text: str) -> str:
    raise ValueError("not the format")


def test_tiny_model_loads_like_a_hub_checkpoint(tiny_lm: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm, local_files_only=True)
    assert tokenizer.eos_token == EOS_TOKEN and tokenizer.pad_token == PAD_TOKEN
    assert model.config.vocab_size == len(tokenizer)
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id

    messages = [{"role": "user", "content": "What happens first?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat happens first?<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert tokenizer.decode(ids) == prompt  # special tokens are single ids and round-trip

    # Deterministic for a seed; a different seed gives different weights.
    again = make_tiny_chat_lm(tmp_path / "again", seed=0)
    other = make_tiny_chat_lm(tmp_path / "other", seed=1)
    weights = (tiny_lm / "model.safetensors").read_bytes()
    assert (again / "model.safetensors").read_bytes() == weights
    assert (again / "tokenizer.json").read_bytes() == (tiny_lm / "tokenizer.json").read_bytes()
    assert (other / "model.safetensors").read_bytes() != weights


def test_replies_keep_order_and_batching_matches_one_by_one(engine: LocalChatModel) -> None:
    requests = _requests()
    before = engine.stats()["requests_sent"]
    batched = engine.generate_parsed_many(requests, str)
    assert engine.stats()["requests_sent"] - before == len(requests)
    assert len(batched) == len(requests)
    assert all(isinstance(r, str) for r in batched)
    texts = [r for r in batched if isinstance(r, str)]
    # The random model's greedy reply depends on the prompt, so a mix-up would show.
    assert len(set(texts)) > 1

    one_by_one = [engine.generate_parsed_many([messages], str)[0] for messages in requests]
    assert [r for r in one_by_one if isinstance(r, str)] == texts


def test_right_padding_would_be_caught(tiny_lm: Path) -> None:
    """Guards the test above: with right padding, batched greedy replies differ."""
    model = LocalChatModel(_settings(tiny_lm))
    requests = _requests()
    single = [r for r in (model.generate_parsed_many([m], str)[0] for m in requests) if isinstance(r, str)]
    model.tokenizer.padding_side = "right"
    batched = [r for r in model.generate_parsed_many(requests, str) if isinstance(r, str)]
    assert batched != single


def test_generate_parsed_many_returns_parsed_values(engine: LocalChatModel) -> None:
    requests = _requests((4, 1, 6, 2))
    greedy = [r for r in engine.generate_parsed_many(requests, str) if isinstance(r, str)]
    parsed = engine.generate_parsed_many(requests, str, desc="parse all")
    assert parsed == greedy
    assert all(isinstance(value, str) for value in parsed)


def test_rejected_replies_are_retried_then_returned_as_parse_rejection(engine: LocalChatModel) -> None:
    requests = _requests((3, 8))
    seen: dict[str, list[str]] = {}

    def parse(text: str) -> str:
        seen.setdefault("all", []).append(text)
        raise ValueError("missing JSON")

    before = engine.stats()["requests_sent"]
    results = engine.generate_parsed_many(requests, parse, attempts=3)
    assert engine.stats()["requests_sent"] - before == 3 * len(requests)
    assert len(seen["all"]) == 3 * len(requests)
    for index, result in enumerate(results):
        assert isinstance(result, ParseRejection)
        assert "3 attempt(s)" in result.reason and "missing JSON" in result.reason
        # Attempts run as rounds over the still-pending items: the last round holds the last replies.
        assert result.reply_text == seen["all"][2 * len(requests) + index]
    # Retries sample (greedy would repeat itself), so the replies are not all the greedy one.
    assert len(set(seen["all"])) > len(requests)
    assert RETRY_TEMPERATURE > 0


def test_parser_bug_becomes_chat_failure(engine: LocalChatModel) -> None:
    def broken(text: str) -> str:
        raise KeyError("bug")

    (result,) = engine.generate_parsed_many(_requests((2,)), broken)
    assert isinstance(result, ChatFailure) and result.kind == "error" and "KeyError" in result.error


def test_failing_batch_becomes_failures_and_out_of_memory_splits(
    tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = LocalChatModel(_settings(tiny_lm))
    requests = _requests()
    expected = [r for r in model.generate_parsed_many(requests, str) if isinstance(r, str)]
    real_generate = model.model.generate

    def oom_on_batches(*args: object, **kwargs: object) -> object:
        if kwargs["input_ids"].shape[0] > 1:  # type: ignore[union-attr]
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model.model, "generate", oom_on_batches)
    results = model.generate_parsed_many(requests, str)
    assert [r for r in results if isinstance(r, str)] == expected

    def crash(*args: object, **kwargs: object) -> object:
        raise RuntimeError("device lost")

    monkeypatch.setattr(model.model, "generate", crash)
    failed = model.generate_parsed_many(requests, str)
    assert len(failed) == len(requests)
    assert all(isinstance(r, ChatFailure) and "device lost" in r.error for r in failed)
    assert model.stats()["failures"] == len(requests)


def test_cache_serves_a_rerun_without_generating(tiny_lm: Path, tmp_path: Path) -> None:
    requests = _requests((2, 5, 3))
    requests.append(requests[0])  # a duplicate is generated once
    model_dir = shutil.copytree(tiny_lm, tmp_path / "model")

    with ResponseCache(tmp_path / "replies.sqlite") as cache:
        rejecting = LocalChatModel(_settings(model_dir), cache=cache)
        rejections = rejecting.generate_parsed_many(requests, _always_reject, attempts=1)
        assert all(isinstance(r, ParseRejection) for r in rejections)
        assert len(cache) == 0  # replies that did not parse are not cached

        first = LocalChatModel(_settings(model_dir), cache=cache)
        values = first.generate_parsed_many(requests, str)
        assert first.stats()["requests_sent"] == 3 and first.stats()["cache_hits"] == 0
        assert values[0] == values[-1]
        assert len(cache) == 3

    shutil.rmtree(model_dir)  # so loading the model would fail: the cache alone must answer
    with ResponseCache(tmp_path / "replies.sqlite") as cache:
        rerun = LocalChatModel(_settings(model_dir), cache=cache)
        assert rerun.generate_parsed_many(requests, str) == values
        assert rerun.stats()["requests_sent"] == 0 and rerun.stats()["cache_hits"] == len(requests)

        # Different generation parameters are a different cache key.
        longer = LocalChatModel(_settings(tiny_lm, max_new_tokens=MAX_NEW_TOKENS + 1), cache=cache)
        assert longer.cache_key(requests[0]) != rerun.cache_key(requests[0])


def test_describe_and_settings(engine: LocalChatModel, tiny_lm: Path) -> None:
    assert engine.describe() == {
        "generator": "transformers",
        "model": str(tiny_lm),
        "revision": None,
        "max_new_tokens": MAX_NEW_TOKENS,
        "batch_size": 3,
        "temperature": 0.0,
        "seed": 0,
        "device": "cpu",
        "dtype": "float32",
    }
    auto = LocalChatModel(_settings(tiny_lm, device="auto")).describe()
    cuda = torch.cuda.is_available()
    assert (auto["device"], auto["dtype"]) == (("cuda", "bfloat16") if cuda else ("cpu", "float32"))
    with pytest.raises(ValueError, match="dtype"):
        LocalLMSettings(model="m", dtype="int3")
    with pytest.raises(ValueError, match="batch_size"):
        LocalLMSettings(model="m", batch_size=0)
    with pytest.raises(ValueError, match="attempts"):
        engine.generate_parsed_many(_requests((1,)), str, attempts=0)


def test_unloadable_model_raises_instead_of_failing_each_item(tmp_path: Path) -> None:
    model = LocalChatModel(LocalLMSettings(model=str(tmp_path), device="cpu"))  # an empty folder
    with pytest.raises((OSError, ValueError)):
        model.generate_parsed_many(_requests((1, 2)), str)


def test_sampling_is_seeded_and_leaves_global_rng_alone(tiny_lm: Path) -> None:
    requests = _requests((2, 6, 4))
    state = torch.random.get_rng_state()
    runs = []
    for seed in (5, 5, 6):
        model = LocalChatModel(_settings(tiny_lm, temperature=1.0, seed=seed))
        runs.append([r for r in model.generate_parsed_many(requests, str) if isinstance(r, str)])
    assert torch.equal(torch.random.get_rng_state(), state)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_make_transformers_generator_from_config(tmp_path: Path) -> None:
    from timewarp.generation.config import GeneratorConfig, make_generator

    # A folder that holds no model yet: the model loads on first use, not when the generator is built.
    model = str(tmp_path / "not-yet-downloaded")
    config = GeneratorConfig(backend="transformers", model=model, max_tokens=4, batch_size=2, cache_dir=str(tmp_path))
    with make_generator(config, seed=3) as generator:  # type: ignore[attr-defined]  # an LLMGenerator
        description = generator.describe()
        assert description["generator"] == "transformers"
        assert (description["model"], description["max_new_tokens"], description["seed"]) == (model, 4, 3)
        assert (description["batch_size"], description["temperature"]) == (2, 0.0)
