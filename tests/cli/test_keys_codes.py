"""`lm vendor keygen`, `lm admin keygen`, `lm code issue/show/verify`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from lm_core.engine.keys import load_private, load_public

from .conftest import Lm

ISSUE = ("code", "issue", "--key", "acme.key", "--product", "Application", "--version", "1.0",
         "--seats", "100", "--expires", "2027-12-31")  # fmt: skip


@pytest.mark.parametrize("role", ["vendor", "admin"])
def test_keygen_writes_a_private_0600_and_a_public_file(lm: Lm, role: str) -> None:
    out = lm(role, "keygen", "--out", "k").stdout
    assert "k.key" in out
    assert stat.S_IMODE(Path("k.key").stat().st_mode) == 0o600
    private = load_private(Path("k.key").read_text())
    assert load_public(Path("k.pub").read_text()) == private.public_key()
    lm(role, "keygen", "--out", "k", code=2)  # refuses to overwrite
    data = lm.json(role, "keygen", "--out", "k", "--force")
    assert data["key"].startswith("ed25519:")
    assert data["key"] in Path("k.pub").read_text()


def test_issue_show_verify(lm: Lm) -> None:
    lm("vendor", "keygen", "--out", "acme")
    code = lm(*ISSUE, "--serial", "X1").stdout.strip()
    assert code.startswith("LM1-")
    assert "\n" not in code
    shown = lm.json("code", "show", code)
    assert shown["vendor"] == "acme"  # default: the key file's name
    assert (shown["license"], shown["seats"], shown["expires"]) == ("Application 1.0", 100,
                                                                     "2027-12-31")  # fmt: skip
    assert shown["serial"] == "X1"
    assert "Application 1.0" in lm("code", "show", code).stdout
    ok = lm("code", "verify", code, "--vendor-key", "acme.pub", "--today", "2027-12-31")
    assert ok.stdout.startswith("ok: ")
    data = lm.json("code", "verify", code, "--vendor-key", "acme.pub", "--today", "2026-01-01")
    assert data["ok"] is True


def test_issue_json_and_add_on(lm: Lm) -> None:
    lm("vendor", "keygen", "--out", "acme")
    data = json.loads(lm(*ISSUE, "--kind", "add", "--vendor", "acme", "--json").stdout)
    assert data["kind"] == "add"
    assert data["code"].startswith("LM1-")


def test_code_from_stdin_with_line_wrapping(lm: Lm) -> None:
    lm("vendor", "keygen", "--out", "acme")
    code = lm(*ISSUE).stdout.strip()
    wrapped = "\n".join("  " + code[i : i + 50] for i in range(0, len(code), 50)) + "\n"
    assert lm("code", "show", "-", "--json", stdin=wrapped).stdout.count(code) == 1


def test_verify_failures_exit_2_with_one_line(lm: Lm) -> None:
    lm("vendor", "keygen", "--out", "acme")
    lm("vendor", "keygen", "--out", "other")
    code = lm(*ISSUE).stdout.strip()
    bad = lm("code", "verify", code, "--vendor-key", "other.pub", code=2)
    assert "vendor 'acme' signature" in bad.stderr
    expired = lm("code", "verify", code, "--vendor-key", "acme.pub", "--today", "2028-01-01",
                 code=2)  # fmt: skip
    assert "expired on 2027-12-31" in expired.stderr
    assert "license code" in lm("code", "show", "LM1-NOPE", code=2).stderr
    assert "not found" in lm("code", "verify", code, "--vendor-key", "missing.pub", code=2).stderr
    lm("code", "verify", code, "--vendor-key", "acme.key", code=2)  # private given for public


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--seats", "0"), "seats"),
        (("--expires", "2027-02-30"), "--expires"),
        (("--kind", "extra"), "--kind"),
        (("--vendor", "a b"), "vendor"),
        (("--key", "acme.pub"), "public key"),
        (("--key", "nokey.key"), "not found"),
    ],
)
def test_issue_bad_input_exits_2(lm: Lm, args: tuple[str, ...], message: str) -> None:
    lm("vendor", "keygen", "--out", "acme")
    options = dict(zip(ISSUE[2::2], ISSUE[3::2], strict=True))
    options.update(zip(args[::2], args[1::2], strict=True))
    argv = [part for pair in options.items() for part in pair]
    assert message in lm("code", "issue", *argv, code=2).stderr


@pytest.mark.parametrize(
    "args",
    [
        ("vendor", "keygen"),
        ("admin", "keygen"),
        ("code", "issue"),
        ("code", "show"),
        ("code", "verify"),
    ],
)
def test_help_has_an_example(lm: Lm, args: tuple[str, ...]) -> None:
    assert "Example: lm " in lm(*args, "--help").stdout
