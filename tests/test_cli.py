import subprocess
import sys
from pathlib import Path

from timewarp.data.ingest import list_shards


def test_make_sample_console_script(tmp_path):
    script = Path(sys.executable).parent / "timewarp"
    result = subprocess.run(
        [str(script), "make-sample", "--out", str(tmp_path / "s"), "--videos", "3", "--seed", "4"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 3 videos" in result.stdout
    assert list_shards(str(tmp_path / "s")).rows == 3
    bad = subprocess.run([str(script), "make-sample", "--out", str(tmp_path / "x"), "--videos", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "at least 1" in bad.stderr
