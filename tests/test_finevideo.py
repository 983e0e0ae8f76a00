import copy

import pytest

from timewarp.data.finevideo import format_timestamp, parse_timestamp, schema_warnings, validate_annotation
from helpers import good_row


@pytest.mark.parametrize(
    "text, seconds",
    [("00:00:00.000", 0.0), ("00:01:05.250", 65.25), ("01:00:00", 3600.0), ("00:00:09.5", 9.5), (" 00:00:01.001 ", 1.001)],
)
def test_parse_timestamp(text, seconds):
    assert parse_timestamp(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1:2", "00:61:00.000", "abc", "00:00:-1.000", None, 12])
def test_parse_timestamp_rejects(text):
    with pytest.raises(ValueError, match="timestamp"):
        parse_timestamp(text)


def test_format_round_trip():
    for seconds in (0.0, 1.5, 59.999, 3725.125):
        assert parse_timestamp(format_timestamp(seconds)) == pytest.approx(seconds)


def test_generated_annotation_validates_with_every_field():
    _, annotation = good_row("vid1")
    parsed = validate_annotation(annotation)
    assert parsed.original_video_filename == "vid1.mp4" and parsed.original_json_filename == "vid1.json"
    scene = parsed.content_metadata.scenes[0]
    assert scene.sceneId == 1 and scene.activities[0].description and scene.activities[0].timestamp.end_timestamp
    # Every documented field is present and well typed: no warning either.
    metadata = annotation["content_metadata"]
    assert metadata["storylines"]["climax"] and metadata["characterList"] and metadata["qAndA"]
    assert metadata["trimmingSuggestions"] and metadata["scenes"][0]["mood"]["keyMoments"]
    assert schema_warnings(annotation) == []


def test_missing_field_is_named():
    _, annotation = good_row("vid1")
    broken = copy.deepcopy(annotation)
    del broken["content_metadata"]["scenes"][1]["activities"]
    with pytest.raises(ValueError, match=r"content_metadata\.scenes\.1\.activities"):
        validate_annotation(broken)
    with pytest.raises(ValueError, match="empty"):
        validate_annotation(None)
