"""V1 on real daemons: a code bound to pool 1's servers serves in pool 1 and serves
nothing in pool 2 (other servers, other TLS keys), saying why in the deny, in `lm status`
and in `lm rlf verify`."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from lm_core.engine.rlf import with_code

from .conftest import Pool, all_up

pytestmark = pytest.mark.integration
BOUND = "Bound 1.0"


def key_file(pool: Pool, path: Path) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(pool.vendor_private + "\n")
    return path


def issue_bound(pool: Pool, key: Path, ids: Path, serial: str) -> str:
    expires = (datetime.date.today() + datetime.timedelta(days=365)).isoformat()
    out = pool.lm(
        "code",
        "issue",
        "--key",
        str(key),
        "--vendor",
        "acme",
        "--product",
        "Bound",
        "--version",
        "1.0",
        "--seats",
        "10",
        "--expires",
        expires,
        "--serial",
        serial,
        "--bind",
        str(ids),
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_code_bound_to_pool1_serves_nothing_in_pool2(
    pool_factory: Callable[..., Pool], tmp_path: Path
) -> None:
    p1, p2 = pool_factory(), pool_factory()
    for p in (p1, p2):
        for sid in p.ids:
            p.start(sid)
    p1.wait(all_up, "pool 1 up")
    p2.wait(all_up, "pool 2 up")

    ids = tmp_path / "pool1.ids"
    out = p1.lm("pki", "export-identities", "--out", str(ids))
    assert out.returncode == 0, out.stderr
    lines = [ln.split() for ln in ids.read_text().splitlines() if ln.startswith("server ")]
    assert [ln[1] for ln in lines] == ["A", "B", "C"]
    assert len({ln[2] for ln in lines}) == 3  # three daemons on one host, three identities
    out = p1.lm("pki", "export-identities", "--out", str(ids))
    assert out.returncode == 2  # never overwritten silently
    assert "already exists" in out.stderr

    # pool 1: its own bound code serves
    code1 = issue_bound(p1, key_file(p1, tmp_path / "v1.key"), ids, "P1")
    shown = json.loads(p1.lm("code", "show", code1, "--json").stdout)
    assert sorted(shown["binding"]) == sorted(ln[2] for ln in lines)
    out = p1.lm("code", "add", code1, "--reason", "bought for pool 1")
    assert out.returncode == 0, out.stderr
    out = p1.lm("client", "hold", "--license", BOUND, "--seconds", "0.5")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "holding 1 x Bound 1.0" in out.stdout
    st = p1.lm("status")
    assert "Bound 1.0" in st.stdout
    assert "bound to this pool" in st.stdout
    assert "unbound" in st.stdout  # the pool's own Application 1.0 code

    # pool 2: the same kind of code, bound to pool 1's servers, serves nothing
    code2 = issue_bound(p2, key_file(p2, tmp_path / "v2.key"), ids, "P2")
    out = p2.lm("code", "add", code2)
    assert out.returncode == 0, out.stderr
    out = p2.lm("client", "hold", "--license", BOUND, "--seconds", "0.5")
    assert out.returncode != 0
    said = out.stdout + out.stderr
    assert "binding" in said
    assert "is bound to 3 servers of another pool; none of them is in this pool" in said
    st = p2.lm("status")
    assert "bound: REFUSED on A, B, C" in st.stdout
    st_json = json.loads(p2.lm("status", "--json").stdout)
    lic = next(x for x in st_json["licenses"] if x["license"] == BOUND)
    assert all(v.startswith("refused: ") for v in lic["binding"].values())
    assert not any(c["license"] == BOUND for c in st_json["clients"])

    # `lm rlf verify` says why, offline, from pool 2's certificates
    p2.signed(with_code(p2.rlf, code2, None), tmp_path / "pool2-next.rlf")
    out = p2.lm("rlf", "verify", str(tmp_path / "pool2-next.rlf"))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "bound to another pool" in out.stdout
    assert "0 of them are this pool's servers, 2 needed" in out.stdout
    out = p2.lm("rlf", "verify", str(tmp_path / "pool2-next.rlf"), "--identities", str(ids))
    assert out.returncode == 0, out.stdout  # against pool 1's identities it would serve
    out = p2.lm("rlf", "show", str(tmp_path / "pool2-next.rlf"))
    assert "bound (3" in out.stdout
    assert "unbound" in out.stdout

    # a malformed identities file: one line naming file, line and field; exit 2
    bad = tmp_path / "bad.ids"
    bad.write_text(ids.read_text().replace(lines[1][2], "not-hex"))
    expires = (datetime.date.today() + datetime.timedelta(days=9)).isoformat()
    out = p2.lm(
        "code",
        "issue",
        "--key",
        str(tmp_path / "v2.key"),
        "--product",
        "X",
        "--version",
        "1",
        "--seats",
        "1",
        "--expires",
        expires,
        "--bind",
        str(bad),
    )
    assert out.returncode == 2
    assert "bad.ids" in out.stderr
    assert "not a server identity" in out.stderr
    assert "Traceback" not in out.stderr
