"""Smoke test of benchmarks/bench_effect.py: two seeds of a shrunken default run (its
own ZenML and MLflow stores), every arm reported per seed and summarised over seeds, DPO -
SFT-cont with its clustered interval per seed and pooled, and a verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "benchmarks" / "bench_effect.py"
ARMS = ("SFT", "DPO", "SFT-cont")


@pytest.mark.timeout(420)
def test_bench_effect_reports_every_arm_per_seed_and_over_seeds(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(
        "parameters:\n  sample_videos: 12\n"
        "  recipe_overrides: {max_steps: 2, save_steps: 10}\n"
    )
    env = {**os.environ, "TQDM_DISABLE": "1"}
    env.pop("ZENML_CONFIG_PATH", None)  # the script sets its own
    out = tmp_path / "results.json"
    # --cpu-isa sse: torch's, MKL's and oneDNN's kernels held to the oldest vector set (what
    # every x86-64 and arm64 CPU runs), as on an older machine.
    command = [sys.executable, str(SCRIPT), "--seeds", "0", "1", "--config", str(config), "--cpu-isa", "sse"]
    command += ["--work", str(tmp_path / "work"), "--out", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    report = json.loads(out.read_text())
    assert report["cpu_capability"] == "DEFAULT" and "torch CPU kernels DEFAULT" in run.stdout
    assert [row["seed"] for row in report["seeds"]] == [0, 1]
    for row in report["seeds"]:
        assert row["items"] > 0 and row["seconds"] > 0
        for metric in ("accuracy_normal", "accuracy_shuffled"):
            for arm in ARMS:
                assert 0.0 <= row[f"{arm} {metric}"] <= 1.0
            assert row[f"DPO-SFT {metric}"] == pytest.approx(row[f"DPO {metric}"] - row[f"SFT {metric}"])
            low, high = row[f"DPO-SFT {metric} 95%"]
            assert low <= row[f"DPO-SFT {metric}"] <= high
            head = row[f"DPO-SFT-cont {metric}"]
            assert head == pytest.approx(row[f"DPO {metric}"] - row[f"SFT-cont {metric}"])
            low, high = row[f"DPO-SFT-cont {metric} 95%"]
            assert low <= head <= high
        # The SFT stage's early stopping is recorded: it stopped at or after its best epoch.
        assert 0 < row["SFT best epoch"] <= row["SFT stopped epoch"]
    # The two seeds are different runs: different sample videos, so different benchmarks.
    assert report["seeds"][0]["run"] != report["seeds"][1]["run"]
    stats = report["summary"]["SFT accuracy_normal"]
    values = [row["SFT accuracy_normal"] for row in report["seeds"]]
    assert stats["mean"] == pytest.approx(sum(values) / 2) and stats["min"] == min(values)
    for arm in ARMS:
        assert f"{arm} accuracy_shuffled" in report["summary"]
    assert "mean" in run.stdout and "SFT-cont-SFT accuracy_normal" in run.stdout
    # Pooled over seeds: the per-seed differences weighted by their items, and a verdict
    # that follows the interval.
    for metric in ("accuracy_normal", "accuracy_shuffled"):
        pooled = report["DPO-SFT-cont pooled"][metric]
        seeds = report["seeds"]
        assert pooled["n"] == sum(row["items"] for row in seeds)
        weighted = sum(row[f"DPO-SFT-cont {metric}"] * row["items"] for row in seeds) / pooled["n"]
        assert pooled["value"] == pytest.approx(weighted)
        assert pooled["low"] <= pooled["value"] <= pooled["high"]
        expected = "DPO wins" if pooled["low"] > 0 else "continued SFT wins" if pooled["high"] < 0 else "no winner"
        assert pooled["verdict"].startswith(expected) and pooled["verdict"] in run.stdout
    # The user's own ZenML store is untouched: the runs live under --work.
    assert (tmp_path / "work" / "zenml").is_dir() and (tmp_path / "work" / "mlflow.db").is_file()
