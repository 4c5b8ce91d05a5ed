"""`lm rlf new/add-code/set-dist/sign/verify/show` end to end in a temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from lm_core.engine.rlf import parse_rlf

from .conftest import Lm

SAMPLES = Path(__file__).resolve().parents[2] / "sample_rlfs"


def _issue(lm: Lm, *extra: str, product: str = "Application", seats: str = "100") -> str:
    return lm(
        "code", "issue", "--key", "acme.key", "--vendor", "acme", "--product", product,
        "--version", "1.0", "--seats", seats, "--expires", "2099-12-31", *extra,
    ).stdout.strip()  # fmt: skip


def test_the_issue_workflow(pool: tuple[Lm, str]) -> None:
    lm, _ = pool
    before = parse_rlf(Path("pool.rlf").read_text())
    assert before.sequence == 2  # new = 1, add-code = 2
    lm("rlf", "set-dist", "pool.rlf", "Application 1.0", "A:50,B:25,C:25")
    edited = parse_rlf(Path("pool.rlf").read_text())
    assert edited.sequence == 3
    assert edited.signature is None
    assert "unsigned" in lm("rlf", "show", "pool.rlf").stdout
    lm("rlf", "verify", "pool.rlf", code=2)
    lm("rlf", "sign", "pool.rlf", "--key", "admin.key")
    out = lm("rlf", "verify", "pool.rlf", "--admin-key", "admin.pub", "--vendor-key", "acme.pub")
    assert out.stdout.startswith("ok: ")
    data = lm.json("rlf", "verify", "pool.rlf")
    assert (data["ok"], data["sequence"], data["codes"]) == (True, 3, 1)
    shown = lm.json("rlf", "show", "pool.rlf")
    assert [s["id"] for s in shown["servers"]] == ["A", "B", "C"]
    assert shown["servers"][0] == {"id": "A", "address": "127.0.0.1:27001", "priority": 1}
    assert shown["signature"] == {"signed": True, "ok": True, "error": None}
    (lic,) = shown["licenses"]
    assert lic["distribution"] == {"A": 50, "B": 25, "C": 25}
    assert (lic["hard_limit"], lic["free_pool"], lic["explicit"]) == (100, 0, True)
    text = lm("rlf", "show", "pool.rlf").stdout
    assert "free pool" in text
    assert "leader priority" in text


def test_even_split_and_free_pool(pool: tuple[Lm, str]) -> None:
    lm, _ = pool
    out = lm("rlf", "set-dist", "pool.rlf", "Application 1.0", "even").stdout
    assert "A:33, B:33, C:33, free pool 1" in out
    lm("rlf", "set-dist", "pool.rlf", "Application 1.0", "A:10")
    (lic,) = lm.json("rlf", "show", "pool.rlf")["licenses"]
    assert (lic["distribution"], lic["free_pool"]) == ({"A": 10, "B": 0, "C": 0}, 90)


def test_add_on_code_and_new_vendor(pool: tuple[Lm, str]) -> None:
    lm, _ = pool
    add = _issue(lm, "--kind", "add", seats="20")
    lm("rlf", "add-code", "pool.rlf", add)
    lm("vendor", "keygen", "--out", "globex")
    other = lm(
        "code", "issue", "--key", "globex.key", "--product", "Solver", "--version", "5",
        "--seats", "9", "--expires", "2099-12-31",
    ).stdout.strip()  # fmt: skip
    missing = lm("rlf", "add-code", "pool.rlf", other, code=2).stderr
    assert "--vendor-key globex.pub" in missing
    lm("rlf", "add-code", "pool.rlf", other, "--vendor-key", "globex.pub")
    lm("rlf", "sign", "pool.rlf", "--key", "admin.key")
    shown = lm.json("rlf", "show", "pool.rlf")
    assert shown["sequence"] == 4  # one bump per edit command
    assert {v["name"] for v in shown["vendors"]} == {"acme", "globex"}
    totals = {lic["license"]: lic["hard_limit"] for lic in shown["licenses"]}
    assert totals == {"Application 1.0": 120, "Solver 5": 9}
    lm("rlf", "verify", "pool.rlf", "--vendor-key", "globex.pub", "--vendor-key", "acme.pub")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set-dist", "pool.rlf", "Application 1.0", "A:50,B:40,C:30"), "sum 120 exceeds"),
        (("set-dist", "pool.rlf", "Application 1.0", "A:40,D:1"), "unknown server 'D'"),
        (("set-dist", "pool.rlf", "Application 1.0", "A:-4"), "negative distribution -4"),
        (("set-dist", "pool.rlf", "Application 1.0", "A40"), "SERVER:SEATS"),
        (("set-dist", "pool.rlf", "Nope 1", "A:1"), "no license code for 'Nope 1'"),
        (("set-dist", "missing.rlf", "Application 1.0", "A:1"), "missing.rlf: RLF not found"),
        (("sign", "pool.rlf", "--key", "acme.key"), "names admin key"),
        (("sign", "pool.rlf", "--key", "admin.pub"), "admin.pub:2: this is a public key"),
        (("verify", "pool.rlf", "--admin-key", "acme.pub"), "not the expected"),
        (("verify", "pool.rlf", "--vendor-key", "admin.pub"), "not the key of any vendor"),
        (("verify", "pool.rlf", "--today", "2100-01-01"), "expired on 2099-12-31"),
        (("add-code", "pool.rlf", "LM1-AAAAA"), "license code"),
        (("new", "pool.rlf", "--name", "x", "--server", "A=h:1"), "already exists"),
    ],
)
def test_bad_input_exits_2_with_one_located_line(
    pool: tuple[Lm, str], args: tuple[str, ...], message: str
) -> None:
    lm, _ = pool
    before = Path("pool.rlf").read_text()
    assert message in lm("rlf", *args, code=2).stderr
    assert Path("pool.rlf").read_text() == before  # a refused edit writes nothing


def test_add_same_code_twice_and_tampered_code(pool: tuple[Lm, str]) -> None:
    lm, code = pool
    assert "already" in lm("rlf", "add-code", "pool.rlf", code, code=2).stderr
    other = _issue(lm, product="Other")
    i = 40
    tampered = other[:i] + ("A" if other[i] != "A" else "B") + other[i + 1 :]
    err = lm("rlf", "add-code", "pool.rlf", tampered, code=2).stderr
    assert "signature" in err or "license code" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--server", "A=127.0.0.1:1", "--server", "B=127.0.0.1:2"), "3 to 11 servers"),
        (("--server", "A=127.0.0.1:1", "--server", "A=127.0.0.1:2", "--server", "C=h:3"),
         "duplicate server id 'A'"),
        (("--server", "A=127.0.0.1", "--server", "B=h:2", "--server", "C=h:3"), "host:port"),
        (("--server", "A127.0.0.1:1",), "ID=HOST:PORT"),
        (("--server", "A=h:1", "--server", "B=h:2", "--server", "C=h:3", "--vendor", "acme"),
         "NAME=KEYFILE"),
    ],
)  # fmt: skip
def test_new_refuses_bad_servers(lm: Lm, args: tuple[str, ...], message: str) -> None:
    assert message in lm("rlf", "new", "p.rlf", "--name", "eng", *args, code=2).stderr
    assert not Path("p.rlf").exists()


def test_issue_sequence_without_admin_key_at_new(lm: Lm) -> None:
    """The issue's order: new without keys, add-code with the vendor key, sign sets admin."""
    lm("vendor", "keygen", "--out", "acme")
    lm("admin", "keygen", "--out", "admin")
    code = _issue(lm)
    lm("rlf", "new", "pool.rlf", "--name", "eng", "--server", "A=127.0.0.1:27001",
       "--server", "B=127.0.0.1:27002", "--server", "C=127.0.0.1:27003")  # fmt: skip
    lm("rlf", "add-code", "pool.rlf", code, "--dist", "A:40,B:30,C:30", "--vendor-key", "acme.pub")
    lm("rlf", "set-dist", "pool.rlf", "Application 1.0", "A:50,B:25,C:25")
    lm("rlf", "sign", "pool.rlf", "--key", "admin.key")
    lm("rlf", "verify", "pool.rlf", "--admin-key", "admin.pub", "--vendor-key", "acme.pub")


def test_syntax_error_names_file_and_line(lm: Lm) -> None:
    Path("p.rlf").write_text('pool = "eng"\nsequence = = 1\n')
    err = lm("rlf", "show", "p.rlf", code=2).stderr
    assert err.startswith("error: p.rlf:2: TOML syntax error")


@pytest.mark.parametrize("name", ["patent", "even", "multi_vendor", "five", "eleven"])
def test_samples_verify_through_the_cli(lm: Lm, name: str) -> None:
    admin, acme = (str(SAMPLES / "keys" / f"DEMO_ONLY_{k}.pub") for k in ("admin", "acme"))
    lm("rlf", "verify", str(SAMPLES / f"{name}.rlf"), "--admin-key", admin, "--vendor-key", acme)
    assert lm.json("rlf", "show", str(SAMPLES / f"{name}.rlf"))["signature"]["ok"] is True


@pytest.mark.parametrize("path", sorted((SAMPLES / "bad").glob("*.rlf")), ids=lambda p: p.stem)
def test_bad_samples_exit_2_through_the_cli(lm: Lm, path: Path) -> None:
    expected = path.with_suffix(".expect").read_text().strip().partition(": ")[2]
    admin = str(SAMPLES / "keys" / "DEMO_ONLY_admin.pub")
    assert expected in lm("rlf", "verify", str(path), "--admin-key", admin, code=2).stderr


@pytest.mark.parametrize("command", ["new", "add-code", "set-dist", "sign", "verify", "show"])
def test_help_has_an_example(lm: Lm, command: str) -> None:
    assert f"Example: lm rlf {command}" in lm("rlf", command, "--help").stdout
