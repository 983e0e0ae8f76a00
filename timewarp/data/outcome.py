"""What became of the data stage's input rows, for the run's log and its errors: rows read
= videos kept + rejections, the rejections by stage and reason, and the schema warnings the
kept videos carry."""

from __future__ import annotations

from collections import Counter

from timewarp.data.corpus import RejectionLog, VideoCorpus

#: How many of the most common (stage, reason) groups and of the first rejections an error shows.
SHOWN = 5

#: What a user can do about rejections at each stage.
WHAT_TO_DO = {
    "read": "the shard or row could not be read: check the parquet files (a download cut short?)",
    "schema": "the json lacks or mistypes a field the method reads (original_video_filename, original_json_filename, "
              "content_metadata.scenes[].sceneId / activities[].description / activities[].timestamp): see "
              "timewarp/data/finevideo.py for the format; other fields only warn",
    "scenes": "too few usable scenes: lower min_scenes or raise max_seconds, or check the activity timestamps",
    "video": "the mp4 cannot be decoded or is shorter than its scenes: check the mp4 column",
    "duplicate": "the rows repeat video ids already taken: each video id must appear once",
    "internal": "an unforeseen error in data preparation: report it with the reasons above",
}


class NoVideosError(ValueError):
    """No input row became a video: nothing to split, train or evaluate on."""


def outcome_lines(corpus: VideoCorpus, log: RejectionLog) -> list[str]:
    """The data stage's counts, one line each: rows in, videos out, rejections by stage,
    schema warnings by field and reason."""
    by_stage = _by_stage(log)
    lines = [f"data: {corpus.rows_read} rows read -> {len(corpus)} videos, {len(log)} rejected"
             + (f" ({by_stage})" if by_stage else "")]
    warnings = corpus.schema_warning_counts()
    if warnings:
        lines.append(f"data: {corpus.summary()['videos_with_schema_warnings']} kept videos have schema warnings "
                     "in fields the method does not read (videos per field and reason):")
        lines += [f"  {count:>6}  {warning}" for warning, count in warnings.items()]
    return lines


def require_videos(corpus: VideoCorpus, log: RejectionLog) -> None:
    """Raise NoVideosError saying what happened to every row when none became a video."""
    if corpus.videos:
        return
    if corpus.rows_read == 0:
        raise NoVideosError("no video to prepare: no row was read (the shards hold no rows, or max_videos is 0); "
                            "check finevideo_root and max_videos")
    groups = Counter((r.stage, r.reason) for r in log.rejections).most_common()
    lines = [f"no video survived data preparation: {corpus.rows_read} rows read, 0 videos, {len(log)} rejected "
             + f"({_by_stage(log)})", "  rejections by stage and reason, most common first:"]
    lines += [f"    {count:>6}  {stage}: {reason}" for (stage, reason), count in groups[:SHOWN]]
    if len(groups) > SHOWN:
        lines.append(f"    ... and {len(groups) - SHOWN} other reasons")
    lines.append("  first rejections:")
    lines += [f"    {r.video_id or '(no id)'} ({r.shard} row {r.row}) {r.stage}: {r.reason}"
              for r in log.rejections[:SHOWN]]
    lines.append("  what to do:")
    lines += [f"    {stage}: {WHAT_TO_DO[stage]}" for stage in log.by_stage() if stage in WHAT_TO_DO]
    raise NoVideosError("\n".join(lines))


def _by_stage(log: RejectionLog) -> str:
    return ", ".join(f"{stage} {count}" for stage, count in log.by_stage().items())
