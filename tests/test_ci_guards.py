"""Reference data missing in CI is an error, not a silent skip."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_refvector_tests_without_shared(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    tests = tmp_path / "checkout" / "tests"  # parents[2] of the copy has no shared/refvectors
    tests.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "test_refvectors.py", tests)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # a pytest subprocess: ~4 s
def test_missing_refvectors_fail_loudly_in_ci(tmp_path):
    out = _run_refvector_tests_without_shared(tmp_path, "true")
    assert out.returncode != 0
    assert "reference vectors not found" in out.stdout and "CI must place shared/" in out.stdout


@pytest.mark.slow
def test_missing_refvectors_skip_outside_ci(tmp_path):
    out = _run_refvector_tests_without_shared(tmp_path, None)
    assert out.returncode == 0 and "skipped" in out.stdout, out.stdout[-2000:]
