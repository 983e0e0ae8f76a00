"""benchmarks/bench_dpo.py: a smoke run at its smallest size (tiny model, CPU, 1 timed step)
that checks the baseline is like for like, and the report's arithmetic on made-up results."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "benchmarks" / "bench_dpo.py"


def _load_report_module():
    spec = importlib.util.spec_from_file_location("dpo_report", REPO_ROOT / "benchmarks" / "dpo_report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


dpo_report = _load_report_module()


@pytest.mark.timeout(300)
def test_bench_dpo_baseline_is_fed_the_vision_tokens_of_our_path(tmp_path):
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    out = tmp_path / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--size", "tiny", "--pairs", "2", "--batch-size", "1"]
    command += ["--warmup", "1", "--steps", "1", "--frames", "8", "--json-out", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=290)
    assert run.returncode == 0, run.stderr[-3000:]

    table = run.stdout[run.stdout.index("config ") :]
    for key in "abcde":
        assert f"\n({key}) " in table, f"row ({key}) missing:\n{run.stdout}"
    assert "refused by TRL" in table
    assert "like for like: " in table and ": equal" in table
    assert "\nreference pass (d stored vs c live" in table

    report = json.loads(out.read_text())
    configs = report["configurations"]
    assert set(configs) == set("abcde")
    refusal = configs["b"]["status"]
    assert refusal.startswith("refused by TRL: ") and "precompute_ref_log_probs" in refusal
    for key in "acde":
        assert configs[key]["ok"] and configs[key]["samples_per_s"] > 0 and configs[key]["samples_per_cpu_s"] > 0
        assert configs[key]["counts"]["sequences"] == 2  # one timed step of one pair: chosen + rejected

    # Like for like: the baseline's 4 images (one temporal patch each) are the video's 4
    # temporal patches of 2 frames, counted in the batches actually trained on.
    a, c, d, e = (configs[key] for key in "acde")
    assert a["frames_shown"] == "4 of 8 frames as images" and c["frames_shown"] == "8 frames as one video"
    assert a["vision_tokens_per_sequence"] == c["vision_tokens_per_sequence"] == d["vision_tokens_per_sequence"] > 0
    assert a["vision_patches_per_sequence"] == c["vision_patches_per_sequence"] == d["vision_patches_per_sequence"]
    assert report["like_for_like"]["equal"] is True
    # What does differ: one vision start/end pair per image instead of one per video ...
    assert a["text_tokens_per_sequence"] - c["text_tokens_per_sequence"] == 2 * (4 - 1)
    assert report["differences"]["a vs c"]["differs"] == ["frames shown", "text tokens/seq"]
    assert report["differences"]["c vs d"]["differs"] == ["reference"]
    # ... and the same frames as images (e) cost twice the vision tokens.
    assert e["vision_tokens_per_sequence"] == 2 * a["vision_tokens_per_sequence"]
    assert c["counts"] == d["counts"]  # c and d train on the same batches
    assert set(report["ratios_vs_a"]) == {"c", "d", "e"}

    reference = report["reference_pass"]
    assert d["precompute_s"] > 0 and c["precompute_s"] is None
    assert reference["wall"]["precompute_s"] == d["precompute_s"]
    assert reference["wall"]["precompute_s_per_pair"] == pytest.approx(d["precompute_s"] / 2)
    assert reference["cpu"]["precompute_s"] == d["precompute_cpu_s"] > 0


def _trained(key: str, vision_tokens: float, samples_per_s: float, precompute_s: float | None = None):
    result = dpo_report.new_result(key, frames=8)
    result.vision_tokens_per_sequence = vision_tokens
    result.vision_patches_per_sequence = 4 * vision_tokens
    result.text_tokens_per_sequence = 100.0
    result.samples_per_s = samples_per_s
    result.precompute_s = precompute_s
    return result


def test_a_baseline_fed_other_vision_tokens_than_ours_stops_the_report():
    results = {"a": _trained("a", 48.0, 1.0), "c": _trained("c", 24.0, 1.0)}
    check = dpo_report.like_for_like(results)
    assert check["equal"] is False
    with pytest.raises(RuntimeError, match=r"not fed the vision tokens our path was .*'a': 48\.0, 'c': 24\.0"):
        dpo_report.require_like_for_like(check)
    dpo_report.require_like_for_like(dpo_report.like_for_like({**results, "c": _trained("c", 48.0, 1.0)}))


def test_reference_break_even_is_the_epochs_a_live_reference_takes_to_cost_the_precompute():
    # Live: 0.5 s per pair; stored: 0.25 s per pair plus 2.5 s once for 10 pairs (0.25 s per pair).
    results = {"c": _trained("c", 24.0, 2.0), "d": _trained("d", 24.0, 4.0, precompute_s=2.5)}
    cost = dpo_report.reference_cost(results, pairs=10)
    assert cost["wall"]["live_reference_s_per_pair_per_epoch"] == pytest.approx(0.25)
    assert cost["wall"]["break_even_epochs"] == pytest.approx(1.0)
    assert cost["cpu"] is None  # no CPU time measured (a GPU run)
    # A live reference that measured no slower never pays for the precompute.
    faster_live = {**results, "c": _trained("c", 24.0, 5.0)}
    assert dpo_report.reference_cost(faster_live, pairs=10)["wall"]["break_even_epochs"] is None
