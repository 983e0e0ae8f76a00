"""Scoring the MCQ benchmarks (timewarp.evaluation.scoring) with tiny random-weight
checkpoints of every family, on a small generated corpus.

- both scorers give one result per item and variant, with the variant's answer, and show
  the variant's frames (original or shuffled video) with the same prompt;
- the log-likelihood scorer's cached-prefix log-probabilities equal full forwards, for
  every family, and it runs the video and question once per item;
- scoring several items per forward (prompts of different lengths, so padded; different
  numbers of answers) gives each item's log-probabilities as scoring it alone, for every
  family, and the scorers batch ``batch_size`` items;
- a model rigged to prefer one letter gets that letter from both scorers; the generation
  scorer reads it from the decoded reply with extract_option;
- batched greedy generation (left re-padding) equals generating one item at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from timewarp.data.corpus import VideoCorpus  # noqa: E402
from timewarp.evaluation import scoring  # noqa: E402
from timewarp.evaluation.loglik import (  # noqa: E402
    answer_token_ids,
    option_logps,
    option_logps_full,
)
from timewarp.evaluation.scoring import (  # noqa: E402
    ScoringConfig,
    generate_replies,
    mcq_prompt,
    score_benchmark,
)
from timewarp.generation.datasets import BENCHMARK_VARIANTS, MCQBenchmark  # noqa: E402
from timewarp.generation.records import OPTION_LETTERS, MCQItem  # noqa: E402
from timewarp.generation.template import TemplateGenerator  # noqa: E402
from timewarp.data.ingest import list_shards  # noqa: E402
from timewarp.models.base import VideoSample  # noqa: E402
from timewarp.models.frames import select_frames  # noqa: E402
from timewarp.data.prepare import PrepareConfig, prepare_corpus  # noqa: E402
from timewarp.data.sample import make_sample  # noqa: E402

FAMILIES = ("qwen2_vl", "llava_onevision", "video_llava", "internvl", "video_llama_3")
STORED_FRAMES = 4
ITEMS = 4  # 3 questions of the first video, 1 of the second
TARGET = 2  # the letter the rigged models prefer: C

Tiny = tuple[Any, Any, Any]  # family, model, processor


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> VideoCorpus:
    root = tmp_path_factory.mktemp("scoring-corpus")
    make_sample(root / "raw", videos=6, seed=1)
    prepared, _ = prepare_corpus(
        list_shards(str(root / "raw")), root / "corpus", PrepareConfig(frames_per_video=STORED_FRAMES)
    )
    return prepared


@pytest.fixture(scope="module")
def items(corpus: VideoCorpus) -> list[MCQItem]:
    generated = TemplateGenerator().benchmark_text(corpus.videos, 3).items[:ITEMS]
    assert len(generated) == ITEMS and len({item.video_id for item in generated}) == 2
    assert any(item.answer_index != item.shuffled_answer_index for item in generated)
    return generated


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Tiny]:
    """family name -> (family, model, processor) of a tiny checkpoint, built once."""
    from timewarp.models.registry import family_by_name

    root = tmp_path_factory.mktemp("scoring-models")
    loaded: dict[str, Tiny] = {}

    def get(name: str) -> Tiny:
        if name not in loaded:
            try:
                family = family_by_name(name)
            except KeyError as error:
                pytest.skip(f"family {name} is not registered here (its transformers classes are missing): {error}")
            model, processor = family.load(str(family.make_tiny(root / name, seed=0)))
            loaded[name] = (family, model.eval(), processor)
        return loaded[name]

    return get


def _shown_frames(corpus: VideoCorpus, item: MCQItem, variant: str, count: int) -> np.ndarray:
    video = next(v for v in corpus.videos if v.video_id == item.video_id)
    frames = corpus.frames(video) if variant == "normal" else corpus.shuffled_frames(video)
    return select_frames(frames, count)


class _RecordingFamily:
    """A family adapter that records every sample it encodes."""

    def __init__(self, family: Any) -> None:
        self._family = family
        self.samples: list[VideoSample] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._family, name)

    def encode(self, processor: Any, samples: list[VideoSample]) -> dict[str, Any]:
        self.samples.extend(samples)
        return self._family.encode(processor, samples)


@contextmanager
def _hooks(*handles: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _rig_loglik(model: Any, banned: set[int]) -> Iterator[None]:
    """LM head logits of ``banned`` tokens pushed to -100 at every position.

    Banning the other letters' tokens (rather than boosting the target's) works for every
    tiny tokenizer: Video-LLaVA's splits " B".." D" into " " + letter but keeps " A" whole,
    so a boosted "C" would also be boosted after C and tie with A."""
    bias = torch.zeros(model.get_output_embeddings().out_features)
    bias[sorted(banned)] = -100.0

    def hook(module: Any, args: Any, output: Any) -> Any:
        return output + bias.to(output.device, output.dtype)

    with _hooks(model.get_output_embeddings().register_forward_hook(hook)):
        yield


@contextmanager
def _rig_reply(model: Any, letter_id: int, eos_id: int) -> Iterator[None]:
    """The model replies ``letter_id`` then ``eos_id``: the logit of the token following
    each input position is raised by 100 (eos after the letter, the letter elsewhere)."""
    seen: dict[str, Any] = {}

    def record(module: Any, args: Any, output: Any) -> None:
        seen["ids"] = args[0]  # the input ids of this forward

    def steer(module: Any, args: Any, output: Any) -> Any:
        ids = seen["ids"][:, -output.shape[-2] :]  # positions the logits are for
        after_letter = (ids == letter_id).to(output.dtype)
        boost = torch.zeros_like(output)
        boost[..., letter_id] = 100.0 * (1 - after_letter)
        boost[..., eos_id] = 100.0 * after_letter
        return output + boost

    with _hooks(
        model.get_input_embeddings().register_forward_hook(record),
        model.get_output_embeddings().register_forward_hook(steer),
    ):
        yield


# ---- (1) results and inputs ---------------------------------------------------------------


@pytest.mark.parametrize("variant", BENCHMARK_VARIANTS)
def test_both_scorers_score_every_item_of_the_variant(
    variant: str, tiny: Callable[[str], Tiny], corpus: VideoCorpus, items: list[MCQItem]
) -> None:
    family, model, processor = tiny("qwen2_vl")
    recorder = _RecordingFamily(family)
    benchmark = MCQBenchmark(items, variant)
    # 3 of the 4 stored frames: subsampled as training does; batches of 3 leave one short batch.
    config = ScoringConfig(frames_per_video=3, batch_size=3, max_new_tokens=4, scorers=("generation", "loglik"))

    results = score_benchmark(model, processor, recorder, benchmark, corpus, config)

    assert list(results) == ["generation", "loglik"]
    for rows in results.values():
        assert [r.item_id for r in rows] == [item.id for item in items]
        for result, item in zip(rows, items):
            assert result.variant == variant and result.question_type == item.question_type
            assert result.answer_index == benchmark.answer_index(item)
            assert result.correct == (result.predicted_index == result.answer_index)
    assert all(r.predicted_index in range(4) for r in results["loglik"])
    assert all(r.predicted_index is None or r.predicted_index in range(4) for r in results["generation"])

    # Every encoded sample shows an item's prompt with the variant's frames.
    expected = [(mcq_prompt(item), _shown_frames(corpus, item, variant, 3)) for item in items]
    assert all(frames.shape[0] == 3 for _, frames in expected)
    for sample in recorder.samples:
        assert any(
            sample.prompt == prompt and np.array_equal(sample.frames, frames) for prompt, frames in expected
        ), sample.prompt
    assert {s.prompt for s in recorder.samples} == {prompt for prompt, _ in expected}
    assert "Answer with the option's letter." in expected[0][0] and "\nC. " in expected[0][0]
    assert not model.training


def test_config_rejects_unknown_scorers() -> None:
    with pytest.raises(ValueError, match="scorers"):
        ScoringConfig(scorers=("generation", "accuracy"))
    with pytest.raises(ValueError):
        ScoringConfig(frames_per_video=0)


def test_scorers_register_by_name_once() -> None:
    assert scoring.SCORERS == ("generation", "loglik", "text_loglik")
    assert ScoringConfig().scorers == scoring.SCORERS
    # A second scorer under a taken name would silently replace the first: refused.
    with pytest.raises(ValueError, match="'loglik' is already registered"):
        scoring.scorer("loglik")(scoring.score_generation)
    assert scoring._SCORER_FUNCTIONS["loglik"] is scoring.score_loglik


# ---- (2) cached prefix == full forwards ---------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_cached_prefix_logps_equal_full_forwards(
    name: str, tiny: Callable[[str], Tiny], corpus: VideoCorpus, items: list[MCQItem]
) -> None:
    family, model, processor = tiny(name)
    answers = list(OPTION_LETTERS)
    for item, variant in ((items[0], "normal"), (items[3], "shuffled")):
        sample = VideoSample(_shown_frames(corpus, item, variant, STORED_FRAMES), mcq_prompt(item))
        answer_ids = answer_token_ids(family, processor, sample, answers)
        prompt_length = family.encode(processor, [sample])["input_ids"].shape[1]

        shapes: list[tuple[int, ...]] = []
        embeddings = model.get_input_embeddings()
        with _hooks(embeddings.register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))):
            (cached,) = option_logps(model, processor, family, [sample], [answer_ids])
        full = option_logps_full(model, processor, family, sample, answers)

        # The video and question ran once: the prompt minus its last token in one row, then
        # the four answers (each after the prompt's last token) from the cache.
        width = 1 + max(len(ids) for ids in answer_ids)
        assert shapes == [(1, prompt_length - 1), (len(answers), width)]
        assert cached.shape == full.shape == (len(answers),)
        assert torch.isfinite(cached).all() and (cached < 0).all()
        torch.testing.assert_close(cached, full, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_batched_logps_equal_one_item_at_a_time(
    name: str, tiny: Callable[[str], Tiny], corpus: VideoCorpus, items: list[MCQItem]
) -> None:
    family, model, processor = tiny(name)

    def sample(item: MCQItem, variant: str, prompt: str) -> VideoSample:
        return VideoSample(_shown_frames(corpus, item, variant, STORED_FRAMES), prompt)

    # Different questions, both variants, letters after lettered prompts and option texts
    # (of different lengths) after bare questions, one item with three answers only.
    queries = [
        (sample(items[0], "normal", mcq_prompt(items[0])), list(OPTION_LETTERS)),
        (sample(items[3], "shuffled", items[3].question), items[3].options),
        (sample(items[1], "shuffled", mcq_prompt(items[1])), list(OPTION_LETTERS[:3])),
        (sample(items[2], "normal", items[2].question), items[2].options),
    ]
    samples = [s for s, _ in queries]
    lengths = family.encode(processor, samples)["attention_mask"].sum(dim=1)
    assert len(set(lengths.tolist())) == len(samples), "prompts of different lengths, so the batch is padded"
    answer_ids = [answer_token_ids(family, processor, s, answers) for s, answers in queries]
    assert len({len(ids) for ids in answer_ids[1]}) > 1, "answers of different lengths"

    shapes: list[tuple[int, ...]] = []
    embeddings = model.get_input_embeddings()
    with _hooks(embeddings.register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))):
        batched = option_logps(model, processor, family, samples, answer_ids)
    # One forward over the prompts (the longest minus its last token), one over all answers.
    assert shapes[0][:2] == (len(samples), int(lengths.max()) - 1)
    assert [shape[0] for shape in shapes] == [len(samples), sum(len(ids) for ids in answer_ids)]
    for (s, answers), ids, scores in zip(queries, answer_ids, batched, strict=True):
        assert scores.shape == (len(answers),) and torch.isfinite(scores).all()
        (alone,) = option_logps(model, processor, family, [s], [ids])
        full = option_logps_full(model, processor, family, s, answers)
        torch.testing.assert_close(scores, alone, atol=1e-4, rtol=1e-6)
        torch.testing.assert_close(scores, full, atol=1e-4, rtol=1e-6)
    # The items' scores differ, so a row scored after another item's prompt would show.
    assert not torch.allclose(batched[0][:3], batched[2], atol=1e-3)


@pytest.mark.parametrize("scorer", ["loglik", "text_loglik"])
def test_loglik_scorers_score_batch_size_items_per_forward(
    scorer: str, tiny: Callable[[str], Tiny], corpus: VideoCorpus, items: list[MCQItem]
) -> None:
    family, model, processor = tiny("qwen2_vl")
    benchmark = MCQBenchmark(items, "shuffled")
    rows: list[int] = []
    embeddings = model.get_input_embeddings()
    picks = {}
    for batch_size, expected_rows in ((3, [3, 12, 1, 4]), (1, [1, 4] * len(items))):
        rows.clear()
        config = ScoringConfig(frames_per_video=STORED_FRAMES, batch_size=batch_size, scorers=(scorer,))
        with _hooks(embeddings.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0]))):
            results = score_benchmark(model, processor, family, benchmark, corpus, config)[scorer]
        # Per batch: the prompts in one forward, then their four answers each.
        assert rows == expected_rows
        picks[batch_size] = [r.predicted_index for r in results]
    assert picks[3] == picks[1]


@pytest.mark.parametrize("variant", BENCHMARK_VARIANTS)
def test_text_loglik_scores_option_texts_after_the_open_question(
    variant: str, tiny: Callable[[str], Tiny], corpus: VideoCorpus, items: list[MCQItem]
) -> None:
    family, model, processor = tiny("qwen2_vl")
    recorder = _RecordingFamily(family)
    config = ScoringConfig(frames_per_video=STORED_FRAMES, scorers=("text_loglik",))

    results = score_benchmark(model, processor, recorder, MCQBenchmark(items, variant), corpus, config)["text_loglik"]

    # The prompts are the bare questions (no options, no letter instruction), with the variant's frames.
    assert {s.prompt for s in recorder.samples} == {item.question for item in items}
    shown = [(item.question, _shown_frames(corpus, item, variant, STORED_FRAMES)) for item in items]
    for sample in recorder.samples:
        assert any(sample.prompt == q and np.array_equal(sample.frames, f) for q, f in shown)
    # The pick is the option whose text is most likely as the answer, as full forwards
    # compute it independently of the cached path.
    for item, result in zip(items, results, strict=True):
        sample = VideoSample(_shown_frames(corpus, item, variant, STORED_FRAMES), item.question)
        full = option_logps_full(model, processor, family, sample, item.options)
        assert result.predicted_index == int(full.argmax())
        assert result.answer_index == MCQBenchmark(items, variant).answer_index(item)


# ---- (3) + (4) rigged models ----------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_loglik_scorer_picks_the_option_a_rigged_model_prefers(
    name: str, tiny: Callable[[str], Tiny], corpus: VideoCorpus, items: list[MCQItem]
) -> None:
    family, model, processor = tiny(name)
    sample = VideoSample(_shown_frames(corpus, items[0], "normal", STORED_FRAMES), mcq_prompt(items[0]))
    answer_ids = answer_token_ids(family, processor, sample, list(OPTION_LETTERS))
    # Tokens of the other letters' answers that C's answer lacks become (near) impossible.
    banned = {t for k, ids in enumerate(answer_ids) if k != TARGET for t in ids} - set(answer_ids[TARGET])
    config = ScoringConfig(frames_per_video=STORED_FRAMES, scorers=("loglik",))
    with _rig_loglik(model, banned):
        for variant in BENCHMARK_VARIANTS:
            results = score_benchmark(model, processor, family, MCQBenchmark(items, variant), corpus, config)
            assert list(results) == ["loglik"]
            assert [r.predicted_index for r in results["loglik"]] == [TARGET] * len(items)


@pytest.mark.parametrize("name", FAMILIES)
def test_generation_scorer_reads_the_decoded_reply(
    name: str,
    tiny: Callable[[str], Tiny],
    corpus: VideoCorpus,
    items: list[MCQItem],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    family, model, processor = tiny(name)
    tokenizer = processor.tokenizer
    (letter_id,) = tokenizer(OPTION_LETTERS[TARGET], add_special_tokens=False)["input_ids"]
    calls: list[tuple[str, list[str]]] = []
    real_extract = scoring.extract_option

    def spy(reply: str, options: list[str]) -> int | None:
        calls.append((reply, options))
        return real_extract(reply, options)

    monkeypatch.setattr(scoring, "extract_option", spy)
    benchmark = MCQBenchmark(items, "shuffled")
    config = ScoringConfig(frames_per_video=STORED_FRAMES, batch_size=3, max_new_tokens=4, scorers=("generation",))
    with _rig_reply(model, letter_id, tokenizer.eos_token_id):
        results = score_benchmark(model, processor, family, benchmark, corpus, config)["generation"]
    assert [reply.strip() for reply, _ in calls] == [OPTION_LETTERS[TARGET]] * len(items)
    assert [options for _, options in calls] == [item.options for item in items]
    assert [r.predicted_index for r in results] == [TARGET] * len(items)
    assert [r.correct for r in results] == [benchmark.answer_index(item) == TARGET for item in items]


@pytest.mark.parametrize("name", FAMILIES)
def test_batched_generation_equals_one_by_one(
    name: str, tiny: Callable[[str], Tiny], corpus: VideoCorpus, items: list[MCQItem]
) -> None:
    family, model, processor = tiny(name)
    samples = [VideoSample(_shown_frames(corpus, item, "normal", STORED_FRAMES), mcq_prompt(item)) for item in items]
    lengths = family.encode(processor, samples)["attention_mask"].sum(dim=1)
    assert len(set(lengths.tolist())) > 1, "prompts of different lengths, so the batch is padded"

    # The replies of random tiny models barely depend on the input, so the logits of each
    # decoding step are compared too (recorded at the LM head, last position).
    steps: list[Any] = []

    def record(module: Any, args: Any, output: Any) -> None:
        steps.append(output[:, -1].float().clone())

    with _hooks(model.get_output_embeddings().register_forward_hook(record)):
        batched = generate_replies(model, processor, family, samples, batch_size=len(samples), max_new_tokens=4)
        batched_steps = list(steps)
        single: list[str] = []
        for row, sample in enumerate(samples):
            steps.clear()
            single += generate_replies(model, processor, family, [sample], batch_size=1, max_new_tokens=4)
            assert steps, "the LM head ran"
            for step, logits in enumerate(steps):
                torch.testing.assert_close(batched_steps[step][row], logits[0], atol=1e-4, rtol=1e-4)
    assert batched == single and len(batched) == len(samples)
