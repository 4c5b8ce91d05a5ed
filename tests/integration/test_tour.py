"""The README's tour, run top to bottom as written, in an empty folder, against real
daemons (TLS). Two changes only: free ports replace 27001-27003, and the interactive
`lm-tui` line is left out (it needs a terminal: tests/tui drives it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lm_core.engine.rlf import parse_rlf
from lm_core.runtime.localpool import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_script() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## A tour") :]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block is not None, "no code block in the README's tour"
    return block.group(1)


def test_readme_tour_runs_top_to_bottom(tmp_path: Path) -> None:
    script = tour_script()
    lines = script.splitlines()
    assert sum(1 for line in lines if line.startswith("lm-tui")) == 1
    script = "\n".join(line for line in lines if not line.startswith("lm-tui"))
    for old, new in zip(("27001", "27002", "27003"), free_ports(3), strict=True):
        assert old in script
        script = script.replace(old, str(new))
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "lm").exists(), "the tour needs the installed lm commands"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LM_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    # Whatever happens, no daemon outlives the test.
    wrapped = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script
    done = subprocess.run(
        ["bash", "-c", wrapped], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    logs = "".join(
        f"\n--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(tmp_path.glob("*.log"))
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + logs
    assert "Traceback" not in done.stderr

    status = json.loads((tmp_path / "status.json").read_text())
    pool = parse_rlf((tmp_path / "pool.rlf").read_text())
    assert pool.signature is not None
    assert pool.borrowing_threshold == 0.9
    assert status["leader"] is not None
    assert status["rlf_seq"] == pool.sequence
    # the code and the add-on added live and the distribution set live survived the push
    assert pool.distribution["Application 1.0"] == {"A": 60, "B": 30, "C": 30}
    assert "Designer 2.0" in pool.distribution
    assert len(pool.codes) == 3
    rows = {lic["license"]: lic for lic in status["licenses"]}
    assert rows["Application 1.0"]["hard_limit"] == 120
    dist = {sid: r["distribution"] for sid, r in rows["Application 1.0"]["servers"].items()}
    assert dist == {"A": 60, "B": 30, "C": 30}
    assert "seed 42: ok" in done.stdout
