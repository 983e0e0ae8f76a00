"""Stage 3-4 of TimeWarp: the scene-level perturbation and the merged captions."""

from __future__ import annotations

from timewarp.data.scenes import SceneSpan
from timewarp.seeding import stable_rng


def scene_permutation(video_id: str, scene_count: int, seed: int) -> list[int]:
    """A permutation of ``range(scene_count)`` that is never the identity.

    Drawn from an RNG keyed by (seed, video id) alone, so a video gets the same order
    whatever the processing order, sharding or worker count. ``perm[k]`` is the true
    index of the scene shown k-th in the shuffled video.
    """
    if scene_count < 2:
        raise ValueError("a shuffle needs at least 2 scenes")
    rng = stable_rng(seed, video_id)
    identity = list(range(scene_count))
    while True:
        permutation = [int(i) for i in rng.permutation(scene_count)]
        if permutation != identity:
            return permutation


def permute(scenes: list[SceneSpan], permutation: list[int]) -> list[SceneSpan]:
    """Scenes (span and caption jointly) in shuffled order."""
    return [scenes[i] for i in permutation]


def combine_captions(scenes: list[SceneSpan]) -> str:
    """Scene captions joined in the given order, as the paper's ``combined_captions``."""
    return " ".join(scene.caption for scene in scenes)
