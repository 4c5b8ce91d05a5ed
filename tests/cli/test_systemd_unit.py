"""contrib/lm-daemon.service: `systemd-analyze verify` finds nothing to say, and the unit
runs what the README's install makes (/opt/lm/bin/lm-daemon from the venv step)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "contrib" / "lm-daemon.service"
INSTALLED = "/opt/lm/bin/lm-daemon"


def test_unit_runs_what_the_readme_installs() -> None:
    unit = UNIT.read_text()
    readme = REPO / "README.md"
    assert f"ExecStart={INSTALLED} " in unit
    install = readme.read_text().split("## Install on a server host", 1)[1]
    assert "python3 -m venv /opt/lm" in install
    assert "/opt/lm/bin/pip install lm-license-pool" in install
    assert "contrib/lm-daemon.service" in install


def _verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "lm-daemon.service"
    path.write_text(unit_text)
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed on this host (the unit is only checked where "
    "systemd is)",
)
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    daemon = Path(sys.executable).parent / "lm-daemon"
    assert daemon.exists(), "the lm-daemon console script is not installed next to python"
    # The one change: ExecStart must exist for verify, so point it at this venv's daemon.
    text = UNIT.read_text().replace(INSTALLED, str(daemon))
    done = _verify(text, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""
    # The check can fail: a broken setting is reported.
    broken = _verify(text.replace("Type=exec", "Type=sometimes"), tmp_path)
    assert "Failed to parse service type" in broken.stderr
