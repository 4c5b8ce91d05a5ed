"""The engine is deterministic: the same inputs give the same outputs, whatever the
interpreter's string-hash seed (the simulator replays a run from its seed alone)."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = r"""
import hashlib
from lm_core.engine import messages as m
from lm_core.engine.harness import make_kit

LIC = "Application 1.0"
kit = make_kit({"A": 20, "B": 20, "C": 20, "D": 20}, ids=("A", "B", "C", "D", "E"))
pool = kit.pool()
for sid in "EDCBA":
    pool.start(sid)
pool.run(4.0)
for i in range(30):
    pool.ask("ABCDE"[i % 5], m.Request(pool="eng", sender=f"c{i}", request_id=1, license=LIC))
code = kit.code(seats=31, serial="N1", product="Designer", version="2.0")
pool.ask("C", m.AddLicenseCode(pool="eng", sender="adm", request_id=2, code=code))
pool.crash("A")
pool.run(12.0)
pool.ask("B", m.ChangeDistribution(pool="eng", sender="adm", request_id=3, license=LIC,
                                   distribution=(("B", 50), ("C", 10))))
pool.run(30.0)
digest = hashlib.sha256()
for src, dst, msg in pool.sent:
    text = repr(msg)
    if "Sync" in type(msg).__name__ or "Forwarded" in type(msg).__name__:
        text = type(msg).__name__ + str(getattr(msg, "cfg_version", ""))  # carry codes
    digest.update(f"{src}>{dst}:{text}".encode())
print(len(pool.sent), digest.hexdigest())
"""


def run(hash_seed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_same_transcript_under_different_hash_seeds() -> None:
    first = run("1")
    assert first.split()[0] != "0"
    assert run("2") == first
