"""The Combined arm's data: several preference sets (TimeWarp-Explicit pairs and
LLaVA-Hound's) as one set over one corpus, each pair keeping its ``source``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from timewarp.data.corpus import RejectionLog, VideoCorpus
from timewarp.data.prepare import merge_corpora
from timewarp.generation.datasets import GenerationLog, PreferenceDataset
from timewarp.generation.records import GenerationRejection

TASK = "combine"


def combine_preferences(
    parts: list[tuple[PreferenceDataset, VideoCorpus]], out_dir: str | Path
) -> tuple[PreferenceDataset, VideoCorpus, GenerationLog]:
    """One preference set over one corpus (media copied into ``out_dir``). A video id that
    two corpora both hold keeps the earlier corpus's video (by shard and row); the other
    set's pairs on that id would be trained on the wrong frames, so they are rejected, as is
    a pair id seen before. Pairs in = pairs out + rejections."""
    merged, _ = merge_corpora([(corpus, RejectionLog()) for _, corpus in parts], out_dir)
    kept = {video.video_id: (video.shard, video.row) for video in merged.videos}
    pairs, rejections, seen = [], [], set()
    for dataset, corpus in parts:
        own = {video.video_id: (video.shard, video.row) for video in corpus.videos}
        for pair in dataset.pairs:
            if pair.id in seen:
                reason = f"pair id {pair.id!r} already taken by an earlier set"
            elif pair.video_id not in own:
                reason = f"video {pair.video_id!r} is not in its own set's corpus ({corpus.location})"
            elif kept.get(pair.video_id) != own[pair.video_id]:
                reason = (f"video id {pair.video_id!r} names a different video in an earlier set; "
                          "rename one set's videos to combine them")
            else:
                seen.add(pair.id)
                pairs.append(pair)
                continue
            rejections.append(GenerationRejection(pair.video_id, TASK, f"{pair.source} pair {pair.id}: {reason}"))
    generator = {"backend": "combined", "sources": dict(Counter(p.source for p in pairs)),
                 "parts": [dataset.generator for dataset, _ in parts]}
    return PreferenceDataset(pairs, str(merged.root), generator), merged, GenerationLog(rejections)
