import pytest

from timewarp.evaluation.extract import extract_option
from timewarp.evaluation.report import ItemResult, accuracy, consistency, paired_difference, summary

OPTIONS = ["A red circle moves left.", "A blue square rises.", "Nothing; the video ends there.", "A cat sleeps."]


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("B", 1), ("B.", 1), ("(C)", 2), ("D) A cat sleeps.", 3), ("[A]", 0), ("b", 1),
        ("Answer: C", 2), ("The answer is D.", 3), ("The correct option is (B)", 1),
        ("I think the answer is A because it moves first.", 0), ("B is correct", 1),
        ("A blue square rises.", 1), ("a blue square rises", 1), ("nothing; the video ends there", 2),
        ("", None), ("I don't know.", None), ("E", None),
        ("A red circle moves left. A blue square rises.", None),  # two option texts: no pick
    ],
)
def test_extract_option(reply, expected):
    assert extract_option(reply, OPTIONS) == expected


def _results(correct: list[bool], variant: str = "normal", prefix: str = "q") -> list[ItemResult]:
    return [ItemResult(f"{prefix}{i}", "after" if i % 2 else "end", variant, c, 0 if c else 1, 0) for i, c in enumerate(correct)]


def test_accuracy_interval_contains_the_value_and_narrows_with_n():
    small = accuracy(_results([True, False] * 5))
    large = accuracy(_results([True, False] * 200))
    assert small.value == large.value == 0.5
    assert small.low < 0.5 < small.high and large.low < 0.5 < large.high
    assert (large.high - large.low) < (small.high - small.low)


def test_consistency_needs_both_variants_right():
    normal = _results([True, True, False, True])
    shuffled = _results([True, False, False, True], variant="shuffled")
    assert consistency(normal + shuffled).value == pytest.approx(0.5)


def test_paired_difference_and_summary():
    base = _results([False] * 10 + [True] * 10)
    better = _results([True] * 15 + [False] * 5)
    diff = paired_difference(base, better)
    assert diff.value == pytest.approx(0.25)
    assert diff.low <= diff.value <= diff.high
    with pytest.raises(ValueError):
        paired_difference(base, better[:5])
    table = summary(base + _results([True] * 20, variant="shuffled"))
    assert table["normal"].value == 0.5 and table["shuffled"].value == 1.0
    assert set(table) >= {"overall", "consistency", "normal/after", "shuffled/end"}
