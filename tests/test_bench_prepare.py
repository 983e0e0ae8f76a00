"""benchmarks/bench_prepare.py: a smoke run at its smallest size (small preset, 3 videos)
that checks every path is timed on the same videos and the ratios are what they say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "benchmarks" / "bench_prepare.py"


@pytest.mark.timeout(180)
def test_bench_prepare_times_every_path_on_the_same_videos(tmp_path):
    out = tmp_path / "result.json"
    command = [sys.executable, str(SCRIPT), "--preset", "small", "--videos", "3", "--rss-videos", "4", "8",
               "--cache", str(tmp_path / "cache"), "--out", str(out), "--no-pipeline"]
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=170, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    result = json.loads(out.read_text())
    paths = ("paper_path", "decode_floor", "ours", "ours_with_render_shuffled_videos")
    assert all(result[path]["videos"] == 3 for path in paths)
    assert result["ours"]["rejected"] == 0
    assert result["speedup_vs_paper"] == pytest.approx(
        result["ours"]["videos_per_s"] / result["paper_path"]["videos_per_s"])
    assert result["ours_vs_decode_floor"] == pytest.approx(
        result["ours"]["seconds"] / result["decode_floor"]["seconds"])
    assert set(result["peak_rss_mb"]) == {"4_videos", "8_videos"}
    assert 0.5 < result["peak_rss_ratio"] < 1.5, "peak memory grows with the corpus"
    assert "decode floor" in run.stdout
