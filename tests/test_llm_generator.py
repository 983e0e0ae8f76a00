"""LLMGenerator end to end: real openai client -> loopback chat server -> a fake LLM.

The fake LLM is "faithful": it reads the numbered events out of the prompt and answers
exactly as the listed order says, in the JSON the prompts ask for. Marker captions make
it misbehave for one video (malformed replies, wrong letters, ...).
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from timewarp.data.corpus import PreparedVideo
from timewarp.generation.chat import ChatSettings
from timewarp.generation.engine import ChatFailure, Engine, Message
from timewarp.generation.llm import LLMGenerator
from timewarp.generation.openai_backend import make_openai_generator
from timewarp.generation.prompts import PROMPT_NAMES, PROMPT_VERSION, load_prompt
from timewarp.generation.records import OPTION_LETTERS, QUESTION_TYPES, BenchmarkText, TrainingText
from timewarp.generation.replies import answer_event, parse_json_reply
from timewarp.generation.replies import numbered_events
from timewarp.generation.reply_cache import ResponseCache
from timewarp.generation.temporal import TemporalQuestion, event_phrase, event_sentence
from timewarp.data.scenes import SceneSpan

try:
    from tests.chat_server import Behaviour, ChatServer, status
except ImportError:  # pragma: no cover - depends on the rootdir layout
    from chat_server import Behaviour, ChatServer, status  # type: ignore

KEY = "sk-test-SECRET-xyz"
KEY_ENV = "TIMEWARP_TEST_LLM_KEY"

# Captions whose first sentences are distinct and never contain one another, so the fake
# LLM (and the checks) can tell which events a question names.
POOL = [
    "A chef slices red onions on a board. She works quickly.",
    "A dog leaps over a wooden fence.",
    "Two children build a sandcastle on the beach. The waves come closer.",
    "A woman paints a blue door.",
    "An old man feeds pigeons in the park.",
    "A mechanic tightens the wheel bolts of a truck.",
    "A girl plays the violin on stage.",
    "Someone pours coffee into a white mug.",
    "A cat knocks a glass off the table.",
    "Three friends hike up a rocky trail.",
    "A surfer rides a large wave.",
    "A teacher writes equations on the blackboard.",
    "A boy kicks a football into the goal.",
    "A gardener waters tomato plants.",
    "A pilot checks the instruments in the cockpit.",
    "A crowd cheers at the finish line.",
    "A potter shapes clay on a spinning wheel.",
    "Rain drips from the edge of a roof.",
    "A florist arranges sunflowers in a vase.",
    "A skateboarder grinds along a metal rail.",
]
MARK_MALFORMED = "A magician pulls a rabbit from a hat."
MARK_FLAKY = "A juggler drops three bowling pins."
MARK_SAME = "A reporter speaks into a microphone."
MARK_WRONG_MCQ = "A kite gets stuck in a tall tree."
MARK_WRONG_SHUFFLED = "A baker slides bread out of the oven."
MARK_FAIL = "A cyclist repairs a flat tyre."
MADE_UP = ["A penguin rides a bicycle.", "A giraffe plays chess.", "A robot bakes a cake."]
SYSTEMS = {load_prompt(name).system: name for name in PROMPT_NAMES}
PHRASES = [event_phrase(c) for c in POOL]
assert all(a == b or a not in b for a in PHRASES for b in PHRASES)


# --------------------------------------------------------------------------- #
# Videos
# --------------------------------------------------------------------------- #


def make_video(video_id: str, captions: list[str], permutation: list[int]) -> PreparedVideo:
    scenes = [SceneSpan(k + 1, 4.0 * k, 4.0 * k + 3.5, c) for k, c in enumerate(captions)]
    return PreparedVideo(
        video_id=video_id,
        shard="data/train-00000.parquet",
        row=0,
        annotation_filename=f"{video_id}.json",
        duration=4.0 * len(captions),
        fps=25.0,
        width=64,
        height=48,
        scenes=scenes,
        permutation=permutation,
        frame_scene=list(range(len(captions))),
        frame_times=[4.0 * k + 1 for k in range(len(captions))],
    )


def make_videos(count: int, start: int = 0, marker: str | None = None) -> list[PreparedVideo]:
    videos = []
    for i in range(start, start + count):
        n = 4 + i % 3
        captions = [POOL[(i * 7 + j * 3) % len(POOL)] for j in range(n)]
        assert len(set(captions)) == n
        if marker is not None:
            captions[1] = marker
        # A fixed non-identity shuffle per video: rotate, then swap the first two.
        perm = [(j + 1 + i % (n - 1)) % n for j in range(n)]
        perm[0], perm[1] = perm[1], perm[0]
        assert perm != list(range(n))
        videos.append(make_video(f"vid-{i:03d}" if marker is None else f"mark-{i:03d}", captions, perm))
    return videos


# --------------------------------------------------------------------------- #
# The fake LLM
# --------------------------------------------------------------------------- #


def understand(question: str, captions: list[str], options: list[str] | None = None) -> TemporalQuestion:
    """What a question asks, with anchors as indices into ``captions``."""
    q = question.lower()
    named = sorted((q.find(event_phrase(c)), k) for k, c in enumerate(captions) if event_phrase(c) in q)
    anchors = tuple(k for _, k in named)
    if "very beginning" in q:
        return TemporalQuestion("beginning")
    if "very end" in q:
        return TemporalQuestion("end")
    if "right after" in q:
        return TemporalQuestion("after", anchors)
    if "right before" in q:
        return TemporalQuestion("before", anchors)
    if q.startswith("does"):
        return TemporalQuestion("order", anchors)
    if options is not None:  # "which of these happens first?": the options are the candidates
        sentences = [event_sentence(c) for c in captions]
        anchors = tuple(sentences.index(o) for o in options if o in sentences)
    return TemporalQuestion("earliest", anchors)


def answer_text(question: TemporalQuestion, captions: list[str], same: bool = False) -> str:
    """The faithful answer under the listed order of ``captions``."""
    if same:
        return "A reporter talks to the camera the whole time."
    value = question.answer(list(range(len(captions))))
    if isinstance(value, bool):
        first = event_phrase(captions[answer_event(question, list(range(len(captions))))])  # type: ignore[index]
        return f"{'Yes' if value else 'No'}, {first} happens first."
    if value is None:
        return "Nothing, the video ends there." if question.question_type == "after" else "Nothing, it opens the video."
    return event_sentence(captions[value])


def numbered(user: str, pattern: str) -> list[tuple[str, str]]:
    return re.findall(pattern, user, re.MULTILINE)


class FakeLLM:
    """Responder for ChatServer: faithful JSON for every prompt, with scripted faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def __call__(self, messages: list[dict[str, Any]]) -> str | Behaviour:
        kind = SYSTEMS[messages[0]["content"]]
        user = messages[1]["content"]
        captions = [text for _, text in numbered(user, r"^(\d+)\. (.+)$")]
        with self._lock:
            self.calls[kind] += 1
            if MARK_FLAKY in captions:
                self.calls["flaky-" + kind] += 1
            flaky_first = MARK_FLAKY in captions and self.calls["flaky-" + kind] == 1
        if kind == "qa":
            if MARK_MALFORMED in captions:
                return "Sure! Here are three great questions about the video."
            if MARK_FAIL in captions:
                return status(400, "this request is refused")
            if flaky_first:
                return '```json\n{"items": [{"type": "after", "anchors": [1],\n```'
            count = int(re.search(r"Write (\d+) question-answer pairs", user).group(1))
            return json.dumps({"items": self.qa_items(captions, count)})
        if kind == "answer_shuffled":
            answers = []
            for number, text in numbered(user, r"^Q(\d+)\. (.+)$"):
                question = understand(text, captions)
                event = answer_event(question, list(range(len(captions))))
                answers.append(
                    {
                        "question": int(number),
                        "answer": answer_text(question, captions, same=MARK_SAME in captions),
                        "answer_event": None if event is None else event + 1,
                    }
                )
            return json.dumps({"answers": answers})
        if kind == "mcq":
            count = int(re.search(r"Write (\d+) multiple-choice questions", user).group(1))
            items = self.mcq_items(captions, count, wrong=MARK_WRONG_MCQ in captions)
            return "```json\n" + json.dumps({"questions": items}, indent=1) + "\n```"  # fenced, as models do
        assert kind == "mcq_shuffled"
        return json.dumps({"answers": self.mcq_answers(user, captions, wrong=MARK_WRONG_SHUFFLED in captions)})

    @staticmethod
    def qa_items(captions: list[str], count: int) -> list[dict[str, Any]]:
        n = len(captions)
        phrase = [event_phrase(c) for c in captions]
        items = []
        for k in range(count):
            kind = ("beginning", "after", "before", "end", "order", "earliest")[k % 6]
            anchors: tuple[int, ...] = ()
            if kind == "beginning":
                text = "What happens at the very beginning of the video?"
            elif kind == "end":
                text = "What happens at the very end of the video?"
            elif kind == "after":
                anchors = (k % (n - 1),)
                text = f"What happens right after {phrase[anchors[0]]}?"
            elif kind == "before":
                anchors = (n - 1 - k % (n - 1),)
                text = f"What happens right before {phrase[anchors[0]]}?"
            elif kind == "order":
                anchors = (2, 0)
                text = f"Does {phrase[2]} happen before {phrase[0]}?"
            else:
                anchors = (3, 1)
                text = f"Which happens first: {phrase[3]} or {phrase[1]}?"
            question = TemporalQuestion(kind, anchors)
            event = answer_event(question, list(range(n)))
            items.append(
                {
                    "type": kind,
                    "anchors": [a + 1 for a in anchors],
                    "question": text,
                    "answer": answer_text(question, captions, same=MARK_SAME in captions),
                    "answer_event": None if event is None else event + 1,
                }
            )
        return items

    @staticmethod
    def mcq_items(captions: list[str], count: int, wrong: bool) -> list[dict[str, Any]]:
        n = len(captions)
        phrase = [event_phrase(c) for c in captions]
        items = []
        for k in range(count):
            kind = ("after", "before", "beginning", "end", "earliest")[k % 5]
            anchors: tuple[int, ...] = ()
            if kind == "after":
                anchors = (n - 1 if n == 5 else 1,)  # the last event for some: "nothing" is correct
                text = f"What happens right after {phrase[anchors[0]]}?"
            elif kind == "before":
                anchors = ((2 * k) % n,)
                text = f"What happens right before {phrase[anchors[0]]}?"
            elif kind == "beginning":
                text = "What happens at the very beginning of the video?"
            elif kind == "end":
                text = "What happens at the very end of the video?"
            else:
                anchors = tuple(sorted(range(min(n, 4)), reverse=True))
                text = "Which of these events happens first?"
            correct = answer_event(TemporalQuestion(kind, anchors), list(range(n)))
            # The correct option always first: balancing the letters is the generator's job.
            others = [e for e in (anchors if kind == "earliest" else range(n)) if e != correct]
            options: list[dict[str, Any]] = [{"event": None if correct is None else correct + 1}]
            options += [{"event": e + 1} for e in others[:3]]
            options += [{"text": t} for t in MADE_UP[: 4 - len(options)]]
            items.append(
                {"type": kind, "anchors": [a + 1 for a in anchors], "question": text, "options": options,
                 "answer": "B" if wrong else "A"}
            )
        return items

    @staticmethod
    def mcq_answers(user: str, captions: list[str], wrong: bool) -> list[dict[str, Any]]:
        answers = []
        blocks = re.split(r"^(?=Q\d+\. )", user.split("Questions:", 1)[1], flags=re.MULTILINE)
        for block in blocks:
            head = re.match(r"Q(\d+)\. (.+)", block)
            if head is None:
                continue
            options = [text for _, text in numbered(block, r"^([A-D])\. (.+)$")]
            question = understand(head.group(2), captions, options)
            event = question.answer(list(range(len(captions))))
            target = event_sentence(captions[event]) if event is not None else None
            letter = next(
                (k for k, o in enumerate(options) if (o == target if target else o.startswith("Nothing"))), 0
            )
            if wrong:
                letter = (letter + 1) % 4
            answers.append({"question": int(head.group(1)), "answer": OPTION_LETTERS[letter]})
        return answers


# --------------------------------------------------------------------------- #
# Fixtures
# --------------------------------------------------------------------------- #


@pytest.fixture()
def fake() -> FakeLLM:
    return FakeLLM()


@pytest.fixture()
def server(fake: FakeLLM) -> Iterator[ChatServer]:
    with ChatServer(responder=fake) as srv:
        yield srv


def settings_for(server: ChatServer, **overrides: Any) -> ChatSettings:
    base: dict[str, Any] = {
        "base_url": server.base_url,
        "model": "test-model",
        "api_key_env": KEY_ENV,
        "timeout_s": 5.0,
        "max_retries": 0,
        "concurrency": 8,
        "max_tokens": 1024,
    }
    return ChatSettings(**{**base, **overrides})


MakeGen = Callable[..., LLMGenerator]


@pytest.fixture()
def make_gen(server: ChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeGen]:
    monkeypatch.setenv(KEY_ENV, KEY)
    made: list[LLMGenerator] = []

    def factory(cache: str = "cache.sqlite", **overrides: Any) -> LLMGenerator:
        generator = make_openai_generator(settings_for(server, **overrides), tmp_path / cache)
        made.append(generator)
        return generator

    yield factory
    for generator in made:
        generator.close()


def expected_answer(question_type: str, anchors: tuple[int, ...], order: list[int], captions: list[str]) -> str:
    """The faithful answer text under ``order`` (true indices), from TemporalQuestion."""
    shown = [captions[i] for i in order]
    position = {event: k for k, event in enumerate(order)}
    question = TemporalQuestion(question_type, tuple(position[a] for a in anchors))
    exact = TemporalQuestion(question_type, anchors).answer(order)
    text = answer_text(question, shown)
    if isinstance(exact, int) and not isinstance(exact, bool):
        assert text == event_sentence(captions[exact])  # the fake LLM is faithful
    return text


# --------------------------------------------------------------------------- #
# Training text (stage 5)
# --------------------------------------------------------------------------- #


def test_pairs_follow_true_and_shuffled_order(make_gen: MakeGen, server: ChatServer) -> None:
    videos = make_videos(12)
    text = make_gen().training_text(videos, questions_per_video=6)

    by_id = {v.video_id: v for v in videos}
    assert len(text.sft) == 12 * 6
    assert {p.question_type for p in text.sft} == {"beginning", "after", "before", "end", "order", "earliest"}
    assert len(text.preferences) > 30
    for pair in text.preferences:
        video = by_id[pair.video_id]
        captions = [s.caption for s in video.scenes]
        question = understand(pair.question, captions)
        assert question.question_type == pair.question_type
        n = len(captions)
        assert pair.chosen == expected_answer(pair.question_type, question.anchors, list(range(n)), captions)
        assert pair.rejected == expected_answer(pair.question_type, question.anchors, video.permutation, captions)
        assert pair.chosen != pair.rejected
        assert pair.permutation == video.permutation and pair.generator == "openai"
        assert re.fullmatch(re.escape(pair.video_id) + r"-q[1-6]", pair.id)
    # SFT answers are the true-order answers.
    sft = {p.id: p for p in text.sft}
    assert all(sft[p.id].answer == p.chosen and sft[p.id].question == p.question for p in text.preferences)
    # Every question without a preference pair has the same exact answer under both orders.
    assert len(text.preferences) + len(text.rejections) == len(text.sft)
    assert all("same exact answer under the shuffled order" in r.reason for r in text.rejections)
    for rejection in text.rejections:
        pair = sft[rejection.reason.split(":")[0]]
        video = by_id[pair.video_id]
        question = understand(pair.question, [s.caption for s in video.scenes])
        assert question.answer(list(range(len(video.scenes)))) == question.answer(video.permutation)
    # One QA call per video, then one shuffled-answer call per video with pending questions.
    assert len(server.chat_requests()) == 12 + len({p.video_id for p in text.preferences})


def test_malformed_reply_retried_then_rejected(make_gen: MakeGen, fake: FakeLLM) -> None:
    videos = make_videos(3) + make_videos(1, start=3, marker=MARK_MALFORMED)
    videos += make_videos(1, start=4, marker=MARK_FLAKY)
    text = make_gen().training_text(videos, questions_per_video=3)

    (rejection,) = [r for r in text.rejections if r.video_id == "mark-003"]
    assert rejection.task == "training"
    assert "malformed reply" in rejection.reason and "3 attempt" in rejection.reason
    assert rejection.reply_text == "Sure! Here are three great questions about the video."
    assert not [p for p in text.sft if p.video_id == "mark-003"]
    # The flaky video's first (broken) reply was retried and the second one used.
    assert fake.calls["flaky-qa"] == 2
    assert len([p for p in text.sft if p.video_id == "mark-004"]) == 3
    # 4 QA calls + 3 retries for the malformed video + 1 for the flaky one.
    assert fake.calls["qa"] == 5 + 2 + 1


def test_rejected_equal_to_chosen_is_dropped(make_gen: MakeGen) -> None:
    videos = make_videos(2) + make_videos(1, start=2, marker=MARK_SAME)
    text = make_gen().training_text(videos, questions_per_video=6)

    assert len([p for p in text.sft if p.video_id == "mark-002"]) == 6  # still good SFT data
    assert not [p for p in text.preferences if p.video_id == "mark-002"]
    same = [r for r in text.rejections if "rejected equals chosen" in r.reason]
    assert same and all(r.video_id == "mark-002" and r.task == "training" for r in same)
    assert all('"answers"' in r.reply_text for r in same)  # the shuffled reply, for review
    assert [p for p in text.preferences if p.video_id != "mark-002"]


def test_call_failure_becomes_rejection(make_gen: MakeGen) -> None:
    videos = make_videos(2) + make_videos(1, start=2, marker=MARK_FAIL)
    text = make_gen().training_text(videos, questions_per_video=3)
    (rejection,) = [r for r in text.rejections if r.video_id == "mark-002"]
    assert rejection.reason.startswith("LLM call failed (bad_request)")
    assert len(text.sft) == 6


# --------------------------------------------------------------------------- #
# Benchmark text (stage 6)
# --------------------------------------------------------------------------- #


def check_item(item: Any, video: PreparedVideo) -> None:
    captions = [s.caption for s in video.scenes]
    n = len(captions)
    question = understand(item.question, captions, item.options)
    assert question.question_type == item.question_type
    for index, order in ((item.answer_index, list(range(n))), (item.shuffled_answer_index, video.permutation)):
        exact = question.answer(order)
        if exact is None:
            assert item.options[index].startswith("Nothing")
        else:
            assert item.options[index] == event_sentence(captions[exact])
    assert len(item.options) == 4 and len(set(item.options)) == 4


def test_mcq_answers_are_exact_for_both_orders(make_gen: MakeGen) -> None:
    videos = make_videos(12)
    bench = make_gen().benchmark_text(videos, mcq_per_video=5)

    assert bench.rejections == []
    assert len(bench.items) == 12 * 5
    by_id = {v.video_id: v for v in videos}
    for item in bench.items:
        check_item(item, by_id[item.video_id])
        assert item.generator == "openai"
    assert {i.question_type for i in bench.items} == {"after", "before", "beginning", "end", "earliest"}
    # Reordering the options for the shuffled answer happened in code, not by dropping items:
    # several items have different correct options under the two orders.
    assert sum(i.answer_index != i.shuffled_answer_index for i in bench.items) > 20


def test_answer_positions_balanced(make_gen: MakeGen) -> None:
    videos = make_videos(40)
    bench = make_gen().benchmark_text(videos, mcq_per_video=3)
    assert len(bench.items) == 120
    counts = Counter(i.answer_letter for i in bench.items)  # the fake LLM always says "A"
    assert set(counts) == set(OPTION_LETTERS)
    assert max(counts.values()) - min(counts.values()) <= 12, counts
    shuffled = Counter(i.shuffled_answer_letter for i in bench.items)
    assert set(shuffled) == set(OPTION_LETTERS) and min(shuffled.values()) >= 18, shuffled
    # Deterministic: the same videos give the same items.
    again = make_gen(cache="other.sqlite").benchmark_text(videos, mcq_per_video=3)
    assert again.items == bench.items


def test_mcq_disagreeing_with_order_is_rejected(make_gen: MakeGen) -> None:
    videos = (
        make_videos(2)
        + make_videos(1, start=2, marker=MARK_WRONG_MCQ)
        + make_videos(1, start=3, marker=MARK_WRONG_SHUFFLED)
    )
    bench = make_gen().benchmark_text(videos, mcq_per_video=3)

    wrong = [r for r in bench.rejections if r.video_id == "mark-002"]
    assert len(wrong) == 3
    assert all("model's answer disagrees with the scene order" in r.reason for r in wrong)
    shuffled = [r for r in bench.rejections if r.video_id == "mark-003"]
    assert len(shuffled) == 3
    assert all("disagrees with the shuffled scene order" in r.reason for r in shuffled)
    assert all(r.task == "benchmark" and r.reply_text for r in bench.rejections)
    assert {i.video_id for i in bench.items} == {"vid-000", "vid-001"}


# --------------------------------------------------------------------------- #
# Cache, description, secrets
# --------------------------------------------------------------------------- #


def test_second_run_on_same_cache_makes_no_requests(make_gen: MakeGen, server: ChatServer) -> None:
    videos = make_videos(6)
    first = make_gen()
    training = first.training_text(videos, questions_per_video=3)
    bench = first.benchmark_text(videos, mcq_per_video=3)
    assert len(server.chat_requests()) > 0
    assert first.stats()["prompt_tokens"] > 0 and first.stats()["completion_tokens"] > 0
    first.close()
    server.reset()

    second = make_gen()  # a new client on the same cache file
    assert second.training_text(videos, questions_per_video=3) == training
    assert second.benchmark_text(videos, mcq_per_video=3) == bench
    assert server.chat_requests() == []
    assert second.stats()["requests_sent"] == 0 and second.stats()["cache_hits"] > 0


def test_describe_and_records_hold_no_secret(
    server: ChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    looked_up: list[str] = []

    def secret_lookup(name: str) -> str:
        looked_up.append(name)
        return KEY

    settings = settings_for(server, seed=5, temperature=0.2)
    with make_openai_generator(settings, tmp_path / "c.sqlite", secret_lookup=secret_lookup) as generator:
        description = generator.describe()
        videos = make_videos(3) + make_videos(1, start=3, marker=MARK_MALFORMED)
        training = generator.training_text(videos, questions_per_video=3)
        bench = generator.benchmark_text(videos, mcq_per_video=3)

    assert looked_up == [KEY_ENV]
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"  # the key was used...
    assert description == {
        "model": "test-model",
        "base_url": server.base_url,
        "temperature": 0.2,
        "max_tokens": 1024,
        "seed": 5,
        "concurrency": 8,
        "generator": "openai",
        "prompt_version": PROMPT_VERSION,
        "prompt_sha256": description["prompt_sha256"],
        "attempts": 3,
    }
    # ...and appears nowhere in what the generator hands back.
    dumped = json.dumps(
        [description, dataclasses.asdict(training), dataclasses.asdict(bench)], default=str
    )
    assert "SECRET" not in dumped and KEY not in dumped
    assert training.rejections and training.sft and bench.items


def test_describe_from_chat_client_settings(server: ChatServer) -> None:
    from timewarp.generation.chat import ChatClient

    with ChatClient(settings_for(server), api_key=KEY) as client:
        description = LLMGenerator(client, name="custom").describe()
    assert description["model"] == "test-model" and description["generator"] == "custom"
    assert KEY not in json.dumps(description)


# --------------------------------------------------------------------------- #
# Item validation (in-process engine: fast, no server needed)
# --------------------------------------------------------------------------- #


class ScriptedEngine(Engine):
    """An in-process engine answering every request with ``reply(messages)``."""

    def __init__(self, reply: Callable[[list[dict[str, Any]]], str], cache: ResponseCache | None = None) -> None:
        super().__init__(cache)
        self.reply = reply

    def _generate(
        self, requests: Sequence[list[Message]], attempt: int, desc: str
    ) -> Iterator[tuple[int, str | ChatFailure]]:
        for index, messages in enumerate(requests):
            yield index, self.reply(messages)

    def cache_params(self) -> dict[str, Any]:
        return {"model": "scripted"}

    def describe(self) -> dict[str, Any]:
        return {"engine": "scripted", "model": "none"}


def one_video() -> PreparedVideo:
    return make_video("solo", POOL[:4], [2, 0, 3, 1])


def run_training(items: list[dict[str, Any]]) -> TrainingText:
    fake = FakeLLM()

    def reply(messages: list[dict[str, Any]]) -> str:
        if SYSTEMS[messages[0]["content"]] == "qa":
            return json.dumps({"items": items})
        return str(fake(messages))

    return LLMGenerator(ScriptedEngine(reply)).training_text([one_video()], questions_per_video=len(items))


def test_invalid_training_items_are_rejected_with_reasons() -> None:
    good = {
        "type": "after",
        "anchors": [1],
        "question": "What happens right after a chef slices red onions on a board?",
        "answer": "A dog leaps over a wooden fence.",
        "answer_event": 2,
    }
    bad = [
        {**good, "type": "sideways", "question": "Q2?"},
        {**good, "anchors": [7], "question": "Q3?"},
        {**good, "anchors": [1, 2], "question": "Q4?"},
        {**good, "answer_event": 3, "question": "Q5?"},
        {**good, "question": "What happens right after event 1?"},
        {**good, "question": good["question"].upper()},  # the first question again
        "not an object",
    ]
    text = run_training([good, *bad])
    assert [p.id for p in text.sft] == ["solo-q1"]
    reasons = [r.reason for r in text.rejections]
    assert reasons[0].startswith("solo-q2: unknown question type 'sideways'")
    assert "out of range 1..4" in reasons[1]
    assert "needs 1 distinct anchors" in reasons[2]
    assert "answer disagrees with the scene order" in reasons[3]
    assert "mentions event numbers" in reasons[4]
    assert "duplicate question" in reasons[5]
    assert "not an object" in reasons[6]
    assert all(r.reply_text.startswith('{"items"') for r in text.rejections)
    assert len(text.preferences) == 1 and text.preferences[0].rejected == "A woman paints a blue door."


def test_engine_retries_a_malformed_reply_and_serves_only_parsed_ones_from_cache(tmp_path: Path) -> None:
    good = {
        "type": "after",
        "anchors": [1],
        "question": "What happens right after a chef slices red onions on a board?",
        "answer": "A dog leaps over a wooden fence.",
        "answer_event": 2,
    }
    fake = FakeLLM()
    qa_calls: list[int] = []

    def reply(messages: list[dict[str, Any]]) -> str:
        if SYSTEMS[messages[0]["content"]] == "qa":
            qa_calls.append(1)
            return "Sorry, no JSON today." if len(qa_calls) == 1 else json.dumps({"items": [good]})
        return str(fake(messages))

    with ResponseCache(tmp_path / "replies.sqlite") as cache:
        first = LLMGenerator(ScriptedEngine(reply, cache))
        text = first.training_text([one_video()], questions_per_video=1)
        assert [p.id for p in text.preferences] == ["solo-q1"] and not text.rejections
        assert first.stats()["retries"] == 1 and first.stats()["requests_sent"] == 3  # qa twice, answers once

        # A cached reply that does not parse (e.g. from an older parser) is asked for again.
        captions = [s.caption for s in one_video().scenes]
        qa_request = load_prompt("qa").render(events=numbered_events(captions), count=1)
        cache.put(first.engine.cache_key(qa_request), "not json")
        again = LLMGenerator(ScriptedEngine(reply, cache))
        assert again.training_text([one_video()], questions_per_video=1) == text
        assert again.stats()["requests_sent"] == 1 and again.stats()["cache_hits"] == 1
        assert cache.get(first.engine.cache_key(qa_request)) == json.dumps({"items": [good]})


def run_benchmark(items: list[dict[str, Any]]) -> BenchmarkText:
    fake = FakeLLM()

    def reply(messages: list[dict[str, Any]]) -> str:
        if SYSTEMS[messages[0]["content"]] == "mcq":
            return json.dumps({"questions": items})
        return str(fake(messages))

    return LLMGenerator(ScriptedEngine(reply)).benchmark_text([one_video()], mcq_per_video=len(items))


def test_invalid_mcq_items_are_rejected_and_options_completed() -> None:
    video = one_video()  # shown order: 2, 0, 3, 1
    after_first = {
        "type": "after",
        "anchors": [1],
        "question": "What happens right after a chef slices red onions on a board?",
        "options": [{"event": 2}, {"event": 3}, {"event": 1}, {"text": "A giraffe plays chess."}],
        "answer": "A",
    }
    fence = {"text": "A dog leaps over a wooden fence."}
    bad = [
        {**after_first, "type": "order", "question": "Q2?"},
        {**after_first, "options": after_first["options"][:3], "question": "Q3?"},
        {**after_first, "options": [{"event": 2}, {"event": 2}, {"event": 1}, {"event": 3}], "question": "Q4?"},
        {**after_first, "answer": "C", "question": "Q5?"},
        {**after_first, "options": [{"event": 3}, {"event": 1}, {"event": None}, {"text": "A robot bakes a cake."}],
         "question": "Q6?"},
        {**after_first, "type": "end", "options": [{"event": 4}, {"event": 1}, {"event": None}, {"event": 2}],
         "question": "Q7?"},
        {**after_first, "options": [{"event": 2}, {"event": 3}, {"event": 1}, fence], "question": "Q8?"},
    ]
    bench = run_benchmark([after_first, *bad])
    reasons = [r.reason for r in bench.rejections]
    assert "yes/no question" in reasons[0]
    assert "exactly 4 options" in reasons[1]
    assert "two options name the same event" in reasons[2]
    assert "model's answer disagrees with the scene order" in reasons[3]
    assert "no option is correct" in reasons[4]
    assert "'nothing' option in a 'end' question" in reasons[5]
    assert "made-up option repeats an event" in reasons[6]
    (item,) = bench.items
    # Shuffled: a chef... (true 0) is shown 2nd, followed by true 3, which the model did not
    # offer: it replaced the made-up distractor.
    assert "A giraffe plays chess." not in item.options
    assert item.options[item.answer_index] == event_sentence(video.scenes[1].caption)
    assert item.options[item.shuffled_answer_index] == event_sentence(video.scenes[3].caption)
    check_item(item, video)


def test_parse_json_reply_tolerates_fences_and_prose() -> None:
    assert parse_json_reply('```json\n{"items": [1]}\n```', "items").entries == [1]
    assert parse_json_reply('Here you go: {"items": [2]} Enjoy!', "items").entries == [2]
    for junk in ("no json", '{"items": []}', '{"other": [1]}', "[1, 2]", '{"items": [1'):
        with pytest.raises(ValueError):
            parse_json_reply(junk, "items")


def test_prompts_are_versioned_and_cover_all_types() -> None:
    assert PROMPT_VERSION == "v1"
    for name in PROMPT_NAMES:
        prompt = load_prompt(name)
        assert prompt.system and prompt.user and "JSON" in prompt.system
    qa = load_prompt("qa").user
    assert all(f'"{kind}"' in qa for kind in QUESTION_TYPES)
    with pytest.raises(KeyError):
        load_prompt("qa").render(events="1. x")  # missing {count}
    with pytest.raises(FileNotFoundError):
        load_prompt("qa", "v0")
    messages = load_prompt("qa").render(events="1. A {count} caption", count=3)
    assert "1. A {count} caption" in messages[1]["content"]  # values are not expanded again
