"""Throughput and memory of timewarp_data's library path on FineVideo-sized videos.

Compares, in one run on the same generated realistic corpus (640x360, 30 fps, 60-105 s,
3-8 scenes):
  ours      prepare_corpus with render_shuffled_videos off (decode probe + 8 frames)
  baseline  what the released scripts did per video: decode and re-encode the trimmed
            normal video and the concatenated shuffled video (libx264, ffmpeg's default
            preset "medium")
and peak memory (max RSS of a fresh process) of ours on 20 vs 80 videos.

    python benchmarks/bench_prepare.py [--unique 6] [--baseline-videos 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from timewarp.data.finevideo import validate_annotation  # noqa: E402
from timewarp.data.ingest import iter_rows, list_shards  # noqa: E402
from timewarp.data.prepare import PrepareConfig, prepare_corpus  # noqa: E402
from timewarp.data.sample import SampleSpec, make_video, sample_video_id, write_shard  # noqa: E402
from timewarp.data.scenes import select_scenes  # noqa: E402
from timewarp.data.shuffle import permute, scene_permutation  # noqa: E402
from timewarp.data.video import render_clips  # noqa: E402


def build_corpus(root: Path, rows: int, unique: int) -> Path:
    """``rows`` FineVideo rows made of ``unique`` distinct realistic videos (re-used under
    new ids: generating hundreds of 90 s videos would dominate the run)."""
    marker = root / f"done-{rows}-{unique}"
    if marker.exists():
        return root
    spec = SampleSpec.realistic()
    with ProcessPoolExecutor() as pool:
        videos = list(pool.map(make_video, [sample_video_id(0, i) for i in range(unique)], [0] * unique, [spec] * unique))
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    shard_rows, shard = [], 0
    for index in range(rows):
        mp4, annotation = videos[index % unique]
        annotation = copy.deepcopy(annotation)
        annotation["original_video_filename"] = f"bench{index:05d}.mp4"
        annotation["original_json_filename"] = f"bench{index:05d}.json"
        shard_rows.append((mp4, annotation))
        if len(shard_rows) == spec.rows_per_shard or index == rows - 1:
            write_shard(shard_rows, data / f"train-{shard:05d}.parquet", spec.row_group_size)
            shard_rows, shard = [], shard + 1
    marker.touch()
    return root


def run_ours(root: Path, max_videos: int, render: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        corpus, log = prepare_corpus(
            list_shards(str(root)), out, PrepareConfig(render_shuffled_videos=render), max_videos=max_videos
        )
        seconds = time.perf_counter() - start
    return {"videos": len(corpus), "rejected": len(log), "seconds": seconds, "videos_per_s": len(corpus) / seconds}


def run_baseline(root: Path, max_videos: int) -> dict:
    """Re-encode the trimmed normal and the shuffled video of each row (the released way)."""
    config = PrepareConfig()
    shards = list_shards(str(root))
    with tempfile.TemporaryDirectory() as out:
        out_dir = Path(out)
        done, start = 0, time.perf_counter()
        for shard, limit in shards.selection(max_videos):
            for row in iter_rows(shard, limit):
                annotation = validate_annotation(row.annotation)
                scenes = select_scenes(annotation, config.scene_rules).scenes
                source = out_dir / "source.mp4"
                source.write_bytes(row.mp4)
                render_clips(source, [(0.0, scenes[-1].end)], out_dir / "normal.mp4", preset="medium")
                order = permute(scenes, scene_permutation(annotation.original_video_filename, len(scenes), 0))
                render_clips(source, [(s.start, s.end) for s in order], out_dir / "shuffled.mp4", preset="medium")
                done += 1
        seconds = time.perf_counter() - start
    return {"videos": done, "seconds": seconds, "videos_per_s": done / seconds}


def peak_rss_mb(root: Path, max_videos: int) -> float:
    """Max RSS of a fresh process that prepares ``max_videos`` videos."""
    code = (
        "import json,resource,sys;sys.path.insert(0,%r);"
        "from benchmarks.bench_prepare import run_ours;from pathlib import Path;"
        "run_ours(Path(%r),%d);"
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024))"
    ) % (str(REPO), str(root), max_videos)
    env = {"TQDM_DISABLE": "1", "PATH": "/usr/bin:/bin"}
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return float(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--unique", type=int, default=6, help="distinct generated videos")
    parser.add_argument("--videos", type=int, default=20, help="videos timed for our path")
    parser.add_argument("--baseline-videos", type=int, default=3, help="videos timed for the baseline")
    parser.add_argument("--cache", default=str(REPO / ".timewarp" / "bench" / "realistic"))
    args = parser.parse_args()

    root = build_corpus(Path(args.cache), rows=80, unique=args.unique)
    ours = run_ours(root, args.videos)
    ours_rendered = run_ours(root, args.baseline_videos, render=True)
    baseline = run_baseline(root, args.baseline_videos)
    rss_20, rss_80 = peak_rss_mb(root, 20), peak_rss_mb(root, 80)
    result = {
        "ours": ours,
        "ours_with_render_shuffled_videos": ours_rendered,
        "baseline_reencode": baseline,
        "speedup_vs_baseline": ours["videos_per_s"] / baseline["videos_per_s"],
        "speedup_with_render_vs_baseline": ours_rendered["videos_per_s"] / baseline["videos_per_s"],
        "peak_rss_mb": {"20_videos": rss_20, "80_videos": rss_80},
        "peak_rss_ratio_80_vs_20": rss_80 / rss_20,
    }
    print(json.dumps(result, indent=2))
    print(
        f"\nthroughput: ours {ours['videos_per_s']:.2f} videos/s, baseline {baseline['videos_per_s']:.3f} videos/s "
        f"-> {result['speedup_vs_baseline']:.1f}x (target >= 10x); with shuffled mp4 rendering "
        f"{result['speedup_with_render_vs_baseline']:.1f}x"
    )
    print(f"peak RSS: {rss_20:.0f} MB at 20 videos, {rss_80:.0f} MB at 80 -> ratio {result['peak_rss_ratio_80_vs_20']:.2f} (flat = 1.0)")


if __name__ == "__main__":
    main()
