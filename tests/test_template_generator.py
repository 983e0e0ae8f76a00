from collections import Counter

import pytest

from timewarp.data.corpus import PreparedVideo
from timewarp.generation.records import OPTION_LETTERS
from timewarp.generation.template import NOTHING_AFTER, NOTHING_BEFORE, OPTION_NOTHING, TemplateGenerator
from timewarp.generation.config import GeneratorConfig, make_generator
from timewarp.generation.temporal import TemporalQuestion, event_names, event_phrase, event_sentence
from timewarp.data.scenes import SceneSpan
from timewarp.data.shuffle import scene_permutation

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink"]


def make_video(index: int, scenes: int) -> PreparedVideo:
    video_id = f"vid{index:03d}"
    spans = [
        SceneSpan(k + 1, 2.0 * k, 2.0 * k + 1.5, f"A shape numbered {index}-{k} glides over the {COLOURS[(k + index) % 8]} field. It stops.")
        for k in range(scenes)
    ]
    return PreparedVideo(
        video_id=video_id, shard="s", row=index, annotation_filename=f"{video_id}.json", duration=2.0 * scenes,
        fps=8.0, width=96, height=64, scenes=spans, permutation=scene_permutation(video_id, scenes, 0),
        frame_scene=list(range(scenes)), frame_times=[s.start + 0.5 for s in spans],
    )


@pytest.fixture(scope="module")
def videos():
    return [make_video(i, 2 + i % 5) for i in range(40)]


def _event_index(text: str, names: list[str]) -> int | None:
    """Which event an answer or option names (None for the 'nothing' answers)."""
    hits = [k for k, name in enumerate(names) if name in text[:1].lower() + text[1:]]
    assert len(hits) <= 1, text
    return hits[0] if hits else None


def _order_for(answer: str, question_type: str, names: list[str], anchors: tuple[int, ...]):
    if question_type == "order":
        return answer.startswith("Yes")
    return _event_index(answer, names)


def test_event_phrase():
    assert event_phrase("A dog runs. Then it sits.") == "a dog runs"
    assert event_phrase("NASA launches a rocket!") == "NASA launches a rocket"
    assert event_phrase(" ".join(["word"] * 40) + ".").endswith("...")


def test_every_answer_matches_its_order_and_rejected_differs(videos):
    generator = TemplateGenerator(seed=0)
    text = generator.training_text(videos, questions_per_video=3)
    by_id = {v.video_id: v for v in videos}
    assert len(text.sft) == len(text.preferences) > 0
    for pair in text.preferences:
        video = by_id[pair.video_id]
        names = event_names(video.scenes)
        assert pair.chosen != pair.rejected
        assert pair.permutation == video.permutation
        anchors = tuple(k for k, name in enumerate(names) if name in pair.question)
        if pair.question_type in ("beginning", "end"):
            anchors = ()
        if pair.question_type == "order":
            # anchors appear in question order: "does a ... come before b"
            anchors = tuple(sorted(anchors, key=lambda k: pair.question.index(names[k])))
        if pair.question_type == "earliest":
            assert len(anchors) == 3
        question = TemporalQuestion(pair.question_type, anchors)
        for answer, order in ((pair.chosen, list(range(len(names)))), (pair.rejected, video.permutation)):
            expected = question.answer(order)
            if answer in (NOTHING_AFTER, NOTHING_BEFORE):
                assert expected is None
            else:
                assert _order_for(answer, pair.question_type, names, anchors) == expected, (pair, order)
    # SFT answers are the chosen answers.
    assert [(s.question, s.answer) for s in text.sft] == [(p.question, p.chosen) for p in text.preferences]


def test_questions_are_diverse_and_deterministic(videos):
    first = TemplateGenerator(seed=0).training_text(videos, 3)
    again = TemplateGenerator(seed=0).training_text(videos, 3)
    other = TemplateGenerator(seed=1).training_text(videos, 3)
    assert first.preferences == again.preferences
    assert first.preferences != other.preferences
    types = Counter(p.question_type for p in first.preferences)
    assert set(types) == {"beginning", "end", "after", "before", "order", "earliest"}
    anchored = [p.question for p in first.preferences if p.question_type not in ("beginning", "end")]
    assert len(set(anchored)) > 0.9 * len(anchored)
    wordings = {p.question for p in first.preferences if p.question_type == "beginning"}
    assert len(wordings) > 1
    for video in videos:
        questions = [p.question for p in first.preferences if p.video_id == video.video_id]
        assert len(questions) == len(set(questions))


def test_two_scene_videos_still_get_questions_or_a_recorded_reason():
    video = make_video(0, 2)
    text = TemplateGenerator().training_text([video], 3)
    assert len(text.preferences) + 0 <= 3
    if len(text.preferences) < 3:
        assert text.rejections and "different answers" in text.rejections[0].reason


def test_benchmark_answers_follow_true_and_shuffled_order(videos):
    benchmark = TemplateGenerator(seed=0).benchmark_text(videos, mcq_per_video=3)
    by_id = {v.video_id: v for v in videos}
    assert len(benchmark.items) == 3 * len(videos)
    for item in benchmark.items:
        video = by_id[item.video_id]
        names = event_names(video.scenes)
        assert len(item.options) == 4 == len(set(item.options))
        anchors = () if item.question_type in ("beginning", "end") else (_event_index(item.question, names),)
        question = TemporalQuestion(item.question_type, anchors)
        for index, order in ((item.answer_index, list(range(len(names)))), (item.shuffled_answer_index, video.permutation)):
            expected = question.answer(order)
            option = item.options[index]
            if expected is None:
                assert option == OPTION_NOTHING[item.question_type]
            else:
                assert _event_index(option, names) == expected
    # Most questions discriminate between the two orders.
    changed = sum(i.answer_index != i.shuffled_answer_index for i in benchmark.items)
    assert changed > 0.8 * len(benchmark.items)


def test_correct_position_is_balanced(videos):
    items = TemplateGenerator(seed=3).benchmark_text(videos, 3).items
    counts = Counter(OPTION_LETTERS[i.answer_index] for i in items)
    assert set(counts) == set("ABCD") and max(counts.values()) - min(counts.values()) <= 1


def test_distractors_come_from_the_video_itself_when_it_has_enough_events(videos):
    items = TemplateGenerator().benchmark_text([v for v in videos if len(v.scenes) >= 5], 3).items
    by_id = {v.video_id: v for v in videos}
    for item in items:
        names = event_names(by_id[item.video_id].scenes)
        own = [o for o in item.options if _event_index(o, names) is not None or o in OPTION_NOTHING.values()]
        assert len(own) == 4


def test_question_types_restrict_the_training_text_whose_answers_are_option_sentences(videos):
    generator = TemplateGenerator(seed=0, question_types=("beginning", "end"))
    text = generator.training_text(videos, questions_per_video=2)
    by_id = {v.video_id: v for v in videos}
    assert {p.question_type for p in text.preferences} == {"beginning", "end"}
    assert {i.question_type for i in generator.benchmark_text(videos, 2).items} == {"beginning", "end"}
    for pair in text.preferences:
        sentences = {event_sentence(scene.caption) for scene in by_id[pair.video_id].scenes}
        # Chosen and rejected are the benchmark's option texts: the events' own sentences.
        assert {pair.chosen, pair.rejected} <= sentences
    with pytest.raises(ValueError, match="question types"):
        TemplateGenerator(question_types=("sideways",))
    with pytest.raises(ValueError, match="question types"):
        GeneratorConfig(question_types=("sideways",))  # at config time, before any step runs
    with pytest.raises(ValueError, match="template backend"):
        GeneratorConfig(backend="openai", model="m", question_types=("end",))
    assert make_generator(GeneratorConfig(question_types=("end",)), seed=0).question_types == ("end",)
