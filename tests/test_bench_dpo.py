"""Smoke test of benchmarks/bench_dpo.py at its smallest size (tiny model, CPU, 1 timed step)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "benchmarks" / "bench_dpo.py"


@pytest.mark.timeout(180)
def test_bench_dpo_prints_all_four_configurations(tmp_path):
    out = tmp_path / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--size", "tiny", "--pairs", "2", "--batch-size", "1"]
    command += ["--warmup", "1", "--steps", "1", "--json-out", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=170)
    assert run.returncode == 0, run.stderr[-3000:]

    table = run.stdout[run.stdout.index("config ") :]
    for key in "abcd":
        assert f"\n({key}) " in table, f"row ({key}) missing:\n{run.stdout}"
    assert "refused by TRL" in table

    report = json.loads(out.read_text())
    configs = report["configurations"]
    assert set(configs) == set("abcd")
    refusal = configs["b"]["status"]
    assert refusal.startswith("refused by TRL: ") and "precompute_ref_log_probs" in refusal
    for key in "acd":
        assert configs[key]["ok"] and configs[key]["samples_per_s"] > 0 and configs[key]["tokens_per_s"] > 0
        assert configs[key]["counts"]["sequences"] == 2  # one timed step of one pair: chosen + rejected
    assert configs["d"]["precompute_s"] > 0 and configs["c"]["precompute_s"] is None
    # c and d train on the same batches; only where the reference log-probs come from differs.
    assert configs["c"]["counts"] == configs["d"]["counts"]
    assert set(report["ratios_vs_a"]) == {"c", "d"}
