"""Throughput and memory of timewarp_data's library path against the released scripts' path,
on the same generated realistic videos (``SampleSpec.realistic``: 640x360, 30 fps, 60-105 s,
5-8 scenes, textured: drifting gradients, grain, moving shapes; x264 ``veryfast``).

Timed on the same first ``--videos`` rows (all distinct videos):
  paper      what the released scripts did per video, one after another: decode, re-encode
             the trimmed normal video with x264 (ffmpeg's default preset ``medium``) and the
             shuffled scene concatenation with mpeg4
  ours       prepare_corpus with render_shuffled_videos off (decode probe + sampled frames,
             PNG frames), one process per core
  ours+mp4   the same with render_shuffled_videos on (also encodes the shuffled mp4)
  floor      the decoding our path cannot avoid: probe + frame reads of the same rows with
             the same processes, nothing written
and peak memory (max RSS of a fresh process) of ours on the small vs the large row count
(rows beyond the distinct videos re-use them under new ids).

    python benchmarks/bench_prepare.py [--videos 8] [--rss-videos 20 80] [--preset realistic]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
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
from timewarp.data.prepare import PrepareConfig, machine_cores, prepare_corpus  # noqa: E402
from timewarp.data.sample import SampleSpec, make_video, sample_video_id, write_shard  # noqa: E402
from timewarp.data.scenes import frame_times, select_scenes  # noqa: E402
from timewarp.data.shuffle import permute, scene_permutation  # noqa: E402
from timewarp.data.video import read_frames, render_clips, video_info  # noqa: E402


def build_corpus(root: Path, rows: int, unique: int, preset: str) -> Path:
    """``rows`` FineVideo rows: ``unique`` distinct generated videos, then the same videos
    again under new ids (generating hundreds of 90 s videos would dominate the run)."""
    marker = root / f"done-{preset}-{rows}-{unique}"
    if marker.exists():
        return root
    spec = SampleSpec.preset(preset)
    with ProcessPoolExecutor() as pool:
        ids = [sample_video_id(0, i) for i in range(unique)]
        videos = list(pool.map(make_video, ids, [0] * unique, [spec] * unique))
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    for old in data.glob("*.parquet"):
        old.unlink()
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


def _timed(videos: int, seconds: float, **extra) -> dict:
    return {"videos": videos, "seconds": seconds, "videos_per_s": videos / seconds, **extra}


def run_ours(root: Path, max_videos: int, render: bool = False, workers: int | None = None) -> dict:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        corpus, log = prepare_corpus(
            list_shards(str(root)), out, PrepareConfig(render_shuffled_videos=render), max_videos=max_videos,
            workers=workers,
        )
        seconds = time.perf_counter() - start
    return _timed(len(corpus), seconds, rejected=len(log))


def _rows(root: Path, max_videos: int):
    for shard, limit in list_shards(str(root)).selection(max_videos):
        yield from iter_rows(shard, limit)


def _decode_row(mp4: bytes, annotation: dict, config: PrepareConfig) -> int:
    """prepare_row's decoding alone: the probe of the kept span's ends and the frames."""
    scenes = select_scenes(validate_annotation(annotation), config.scene_rules).scenes
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "video.mp4"
        path.write_bytes(mp4)
        info = video_info(path)
        probe = [scenes[0].start, max(scenes[0].start, scenes[-1].end - 1.0 / info.fps)]
        return len(read_frames(path, probe + [t for _, t in frame_times(scenes, config.frames_per_video)]))


def run_decode_floor(root: Path, max_videos: int, workers: int | None = None) -> dict:
    config, workers = PrepareConfig(), workers or machine_cores()
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_decode_row, row.mp4, row.annotation, config) for row in _rows(root, max_videos)]
        done = sum(1 for future in futures if future.result())
    return _timed(done, time.perf_counter() - start)


def run_paper_path(root: Path, max_videos: int) -> dict:
    """The released scripts, per video and in sequence: the trimmed normal video re-encoded
    with x264 (preset medium), the shuffled scene concatenation with mpeg4."""
    config = PrepareConfig()
    with tempfile.TemporaryDirectory() as out:
        out_dir = Path(out)
        done, start = 0, time.perf_counter()
        for row in _rows(root, max_videos):
            annotation = validate_annotation(row.annotation)
            scenes = select_scenes(annotation, config.scene_rules).scenes
            source = out_dir / "source.mp4"
            source.write_bytes(row.mp4)
            render_clips(source, [(0.0, scenes[-1].end)], out_dir / "normal.mp4", preset="medium")
            order = permute(scenes, scene_permutation(annotation.original_video_filename, len(scenes), 0))
            render_clips(source, [(s.start, s.end) for s in order], out_dir / "shuffled.mp4", codec="mpeg4")
            done += 1
        seconds = time.perf_counter() - start
    return _timed(done, seconds)


def run_pipeline(root: Path, max_videos: int, work: Path) -> dict:
    """``zenml pipeline run timewarp_data`` as a user types it (a fresh process: start-up,
    every step, an export), in a ZenML store of its own, without the step cache. Timed on
    the second run: the first creates the store."""
    config = work / "run.yaml"
    config.write_text(json.dumps({"enable_cache": False, "parameters": {
        "finevideo_root": str(root), "max_videos": max_videos, "export_dir": str(work / "export")}}))
    env = {**os.environ, "ZENML_CONFIG_PATH": str(work / "zenml"), "ZENML_ANALYTICS_OPT_IN": "false",
           "TQDM_DISABLE": "1"}
    command = [str(Path(sys.executable).parent / "zenml"), "pipeline", "run", "timewarp_data", "-c", str(config)]
    seconds = 0.0
    for _ in range(2):
        shutil.rmtree(work / "export", ignore_errors=True)
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
    return _timed(max_videos, seconds)


def peak_rss_mb(root: Path, max_videos: int) -> float:
    """Max RSS of a fresh process that prepares ``max_videos`` videos (its workers included:
    RUSAGE_CHILDREN holds the largest of them)."""
    code = (
        "import json,resource,sys;sys.path.insert(0,%r);"
        "from benchmarks.bench_prepare import run_ours;from pathlib import Path;"
        "run_ours(Path(%r),%d);"
        "print(json.dumps(max(resource.getrusage(w).ru_maxrss for w in "
        "(resource.RUSAGE_SELF,resource.RUSAGE_CHILDREN))/1024))"
    ) % (str(REPO), str(root), max_videos)
    env = {"TQDM_DISABLE": "1", "PATH": "/usr/bin:/bin"}
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return float(output.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=8, help="distinct videos, timed on every path")
    parser.add_argument("--rss-videos", type=int, nargs=2, default=(20, 80), help="row counts for peak memory")
    parser.add_argument("--preset", default="realistic", help="SampleSpec preset of the generated videos")
    parser.add_argument("--cache", default=str(REPO / ".timewarp" / "bench" / "prepare"))
    parser.add_argument("--out", default=None, help="also write the results here as JSON")
    parser.add_argument("--no-pipeline", dest="pipeline", action="store_false",
                        help="skip timing `zenml pipeline run timewarp_data` end to end")
    args = parser.parse_args(argv)

    small, large = args.rss_videos
    root = build_corpus(Path(args.cache) / args.preset, rows=max(large, args.videos), unique=args.videos,
                        preset=args.preset)
    paper = run_paper_path(root, args.videos)
    floor = run_decode_floor(root, args.videos)
    ours = run_ours(root, args.videos)
    ours_rendered = run_ours(root, args.videos, render=True)
    rss_small, rss_large = peak_rss_mb(root, small), peak_rss_mb(root, large)
    if args.pipeline:
        with tempfile.TemporaryDirectory() as work:
            pipeline = run_pipeline(root, args.videos, Path(work))
    result = {
        "videos": args.videos,
        "preset": args.preset,
        "workers": machine_cores(),
        "paper_path": paper,
        "decode_floor": floor,
        "ours": ours,
        "ours_with_render_shuffled_videos": ours_rendered,
        "speedup_vs_paper": ours["videos_per_s"] / paper["videos_per_s"],
        "speedup_with_render_vs_paper": ours_rendered["videos_per_s"] / paper["videos_per_s"],
        "ours_vs_decode_floor": ours["seconds"] / floor["seconds"],
        "peak_rss_mb": {f"{small}_videos": rss_small, f"{large}_videos": rss_large},
        "peak_rss_ratio": rss_large / rss_small,
    }
    if args.pipeline:
        result["pipeline_end_to_end"] = pipeline
        result["pipeline_speedup_vs_paper"] = paper["seconds"] / pipeline["seconds"]
    print(json.dumps(result, indent=2))
    print(
        f"\n{args.videos} videos, {result['workers']} worker(s): paper path {paper['videos_per_s']:.3f} videos/s, "
        f"ours {ours['videos_per_s']:.2f} ({result['speedup_vs_paper']:.1f}x), with shuffled mp4s "
        f"{ours_rendered['videos_per_s']:.2f} ({result['speedup_with_render_vs_paper']:.1f}x); decode floor "
        f"{floor['videos_per_s']:.2f} videos/s (ours takes {result['ours_vs_decode_floor']:.2f}x its time)"
    )
    print(f"peak RSS: {rss_small:.0f} MB at {small} videos, {rss_large:.0f} MB at {large} -> ratio "
          f"{result['peak_rss_ratio']:.2f} (flat = 1.0)")
    if args.pipeline:
        print(f"zenml pipeline run timewarp_data end to end (start-up and export included): {pipeline['seconds']:.1f} s "
              f"vs the paper path's {paper['seconds']:.1f} s ({result['pipeline_speedup_vs_paper']:.1f}x)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
