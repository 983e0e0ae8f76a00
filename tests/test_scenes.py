import pytest

from timewarp.data.finevideo import validate_annotation
from timewarp.data.scenes import SceneRuleError, SceneRules, SceneSpan, allocate_frames, frame_times, select_scenes
from helpers import annotation_with_activities


def select(scenes, **rules):
    return select_scenes(validate_annotation(annotation_with_activities(scenes)), SceneRules(**rules))


def test_span_is_first_activity_start_to_last_activity_end_and_caption_joins():
    result = select(
        [
            [("00:00:01.500", "00:00:03.000", "A dog runs."), ("00:00:03.000", "00:00:04.250", "It sits.")],
            [("00:00:05.000", "00:00:08.000", "A cat jumps.")],
        ]
    )
    first, second = result.scenes
    assert (first.start, first.end, first.caption) == (1.5, 4.25, "A dog runs. It sits.")
    assert (second.start, second.end) == (5.0, 8.0)
    assert isinstance(first.start, float)


def test_empty_activity_scenes_are_skipped_with_reason():
    result = select([[("00:00:00.000", "00:00:01.000", "a")], [], [("00:00:02.000", "00:00:03.000", "b")]])
    assert [s.scene_id for s in result.scenes] == [1, 3]
    assert result.skipped == ["scene 2: no activities"]


def test_cap_stops_the_walk_at_first_scene_past_it():
    scenes = [
        [("00:00:00.000", "00:00:50.000", "a")],
        [("00:00:50.000", "00:01:40.000", "b")],
        [("00:01:40.000", "00:01:50.000", "c")],  # ends at 110 s > 105 s
        [("00:01:50.000", "00:01:52.000", "d")],
    ]
    result = select(scenes)
    assert [s.caption for s in result.scenes] == ["a", "b"]
    assert "past the 105s cap" in result.skipped[-1]
    assert [s.caption for s in select(scenes, max_seconds=200).scenes] == ["a", "b", "c", "d"]


def test_reversed_spans_are_skipped_and_too_few_scenes_reject():
    with pytest.raises(SceneRuleError, match="reversed"):
        select([[("00:00:05.000", "00:00:02.000", "a")], [("00:00:06.000", "00:00:07.000", "b")]])
    result = select(
        [
            [("00:00:00.000", "00:00:01.000", "a")],
            [("00:00:05.000", "00:00:02.000", "bad")],
            [("00:00:06.000", "00:00:07.000", "c")],
        ]
    )
    assert [s.caption for s in result.scenes] == ["a", "c"]


def test_unparseable_timestamp_rejects_the_video():
    with pytest.raises(SceneRuleError, match="unparseable timestamp"):
        select([[("00:00:00.000", "soon", "a")], [("00:00:06.000", "00:00:07.000", "b")]])


def test_min_scenes_is_a_parameter():
    scenes = [[("00:00:00.000", "00:00:01.000", "a")], [("00:00:02.000", "00:00:03.000", "b")]]
    assert len(select(scenes, min_scenes=2).scenes) == 2
    with pytest.raises(SceneRuleError, match="fewer than min_scenes=3"):
        select(scenes, min_scenes=3)


def test_integer_timestamps_only_on_request():
    scenes = [[("00:00:00.700", "00:00:01.900", "a")], [("00:00:02.200", "00:00:03.800", "b")]]
    assert [(s.start, s.end) for s in select(scenes).scenes] == [(0.7, 1.9), (2.2, 3.8)]
    assert [(s.start, s.end) for s in select(scenes, integer_timestamps=True).scenes] == [(0.0, 1.0), (2.0, 3.0)]


def test_frames_cover_every_scene_and_stay_inside_spans():
    scenes = [SceneSpan(1, 0.0, 10.0, "a"), SceneSpan(2, 10.0, 10.5, "b"), SceneSpan(3, 12.0, 20.0, "c")]
    assert allocate_frames(scenes, 8) == [4, 1, 3]
    assert sum(allocate_frames(scenes, 2)) == 2
    times = frame_times(scenes, 8)
    assert [scene for scene, _ in times] == [0, 0, 0, 0, 1, 2, 2, 2]
    for scene, t in times:
        assert scenes[scene].start < t < scenes[scene].end
    assert [t for _, t in times] == sorted(t for _, t in times)
