"""`pki`: the pool CA and its certificates, and `lm pki init`."""

from __future__ import annotations

import ipaddress
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from lm_cli.main import app
from lm_core.errors import InputError
from lm_core.runtime.pki import PkiServer, init_pki, write_atomic

REPO = Path(__file__).resolve().parents[2]
PATENT = REPO / "sample_rlfs" / "patent.rlf"


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def attr(c: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    return str(c.subject.get_attributes_for_oid(oid)[0].value)


def test_init_writes_every_file_with_the_right_modes(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    result = init_pki(
        out, pool="eng", servers=[PkiServer("A", "10.0.0.5"), PkiServer("B", "lm-b.example")]
    )
    assert not result.ca_reused
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "ca.pem",
            "ca.key",
            "server-A.pem",
            "server-A.key",
            "server-B.pem",
            "server-B.key",
            "admin.pem",
            "admin.key",
            "monitor.pem",
            "monitor.key",
            "client.pem",
            "client.key",
            "claim.key",
        ]
    )  # fmt: skip  -- and no temporary files left behind
    for path in out.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.suffix == ".key" else 0o644), path.name


def test_certificates_carry_role_pool_and_sans(tmp_path: Path) -> None:
    init_pki(tmp_path, pool="eng", servers=[PkiServer("A", "10.0.0.5"), PkiServer("B", "lm-b")])
    ca = cert(tmp_path / "ca.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    a = cert(tmp_path / "server-A.pem")
    assert attr(a, NameOID.COMMON_NAME) == "server:A"
    assert attr(a, NameOID.ORGANIZATIONAL_UNIT_NAME) == "server"
    assert attr(a, NameOID.ORGANIZATION_NAME) == "eng"
    a.verify_directly_issued_by(ca)
    sans = a.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.0.0.5"),
    }
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    b_sans = cert(tmp_path / "server-B.pem").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert b_sans.value.get_values_for_type(x509.DNSName) == ["lm-b", "localhost"]
    eku = a.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    admin = cert(tmp_path / "admin.pem")
    assert attr(admin, NameOID.COMMON_NAME) == "admin:admin"
    assert list(admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    admin.verify_directly_issued_by(ca)
    assert attr(cert(tmp_path / "client.pem"), NameOID.COMMON_NAME) == "client:client"


def test_a_second_run_keeps_the_ca_and_adds_servers(tmp_path: Path) -> None:
    init_pki(tmp_path, pool="eng", servers=[PkiServer("A", "127.0.0.1")])
    ca_before = (tmp_path / "ca.pem").read_bytes()
    result = init_pki(
        tmp_path, pool="eng", servers=[PkiServer("A", "127.0.0.1"), PkiServer("D", "127.0.0.1")]
    )
    assert result.ca_reused
    assert (tmp_path / "ca.pem").read_bytes() == ca_before
    cert(tmp_path / "server-D.pem").verify_directly_issued_by(cert(tmp_path / "ca.pem"))


def test_a_damaged_or_mismatched_ca_is_an_input_error(tmp_path: Path) -> None:
    init_pki(tmp_path / "one", pool="eng", servers=[PkiServer("A", "127.0.0.1")])
    init_pki(tmp_path / "two", pool="eng", servers=[PkiServer("A", "127.0.0.1")])
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "ca.pem").write_bytes((tmp_path / "one" / "ca.pem").read_bytes())
    (mixed / "ca.key").write_bytes((tmp_path / "two" / "ca.key").read_bytes())
    with pytest.raises(InputError, match=r"ca\.key does not match ca\.pem"):
        init_pki(mixed, pool="eng", servers=[PkiServer("A", "127.0.0.1")])
    (mixed / "ca.key").unlink()
    with pytest.raises(InputError, match="half a CA"):
        init_pki(mixed, pool="eng", servers=[PkiServer("A", "127.0.0.1")])
    (mixed / "ca.key").write_text("garbage")
    with pytest.raises(InputError, match="not an unencrypted PEM key"):
        init_pki(mixed, pool="eng", servers=[PkiServer("A", "127.0.0.1")])
    with pytest.raises(InputError, match="no servers"):
        init_pki(tmp_path / "x", pool="eng", servers=[])


def test_write_atomic_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_atomic(target, b"one")
    write_atomic(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_cli_pki_init(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "tls"
    res = runner.invoke(app, ["pki", "init", "--rlf", str(PATENT), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["pool"] == "patent"
    assert data["ca_reused"] is False
    assert {Path(f).name for f in data["files"]} >= {"server-A.pem", "server-C.key", "admin.pem"}
    res = runner.invoke(app, ["pki", "init", "--rlf", str(PATENT), "--out", str(out)])
    assert res.exit_code == 0
    assert "kept the existing pool CA" in res.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--rlf", "missing.rlf"], "RLF not found"),
        (["--rlf", str(PATENT), "--admin-name", "bad name"], "--admin-name"),
        (["--rlf", str(PATENT), "--out", "{file}/sub"], "cannot write"),
    ],
)
def test_cli_pki_init_bad_input_is_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    afile = tmp_path / "file"
    afile.write_text("")
    args = [a.replace("{file}", str(afile)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "tls")]
    res = CliRunner().invoke(app, ["pki", "init", *args], env={"LM_POOL": ""})
    assert res.exit_code == 2
    assert needle in res.stderr
    assert "Traceback" not in res.output


def test_operator_tools_fall_back_to_the_monitor_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lm_core.runtime.tlsconfig import cert_role, load_tls_dir

    init_pki(tmp_path, pool="eng", servers=[PkiServer("A", "127.0.0.1")])
    paths = load_tls_dir(tmp_path, "admin")
    assert paths is not None
    assert paths.cert is not None
    assert cert_role(paths.cert) == "admin"
    monkeypatch.setenv("LM_TLS_ROLE", "monitor")
    forced = load_tls_dir(tmp_path, "admin")
    assert forced is not None
    assert forced.cert is not None
    assert cert_role(forced.cert) == "monitor"
    monkeypatch.delenv("LM_TLS_ROLE")
    (tmp_path / "admin.pem").unlink()
    (tmp_path / "admin.key").unlink()
    fallback = load_tls_dir(tmp_path, "admin")
    assert fallback is not None
    assert fallback.cert == tmp_path / "monitor.pem"
