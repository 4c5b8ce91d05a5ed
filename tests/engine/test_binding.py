"""V1 one purchase, one pool: codes bound to a pool's server identities (engine only)."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from lm_core.engine.binding import (
    PoolIdentities,
    binding_refusal,
    offline_refusal,
    parse_identities,
    render_identities,
)
from lm_core.engine.codes import issue_code, parse_code, verify_code
from lm_core.engine.harness import make_kit
from lm_core.engine.keys import load_private, load_public
from lm_core.engine.messages import AddLicenseCode, AdminReply, Authorize, Deny, Request
from lm_core.errors import CodeError, InputError, SignatureError

IDS = {"A": "a" * 32, "B": "b" * 32, "C": "c" * 32}
OTHER = {"A": "1" * 32, "B": "2" * 32, "C": "3" * 32}
LIC = "Bound 1.0"
DAY = datetime.date(2026, 1, 1)


def bound_code(kit_key: str, binding: tuple[str, ...], serial: str = "B1") -> str:
    return issue_code(
        load_private(kit_key),
        vendor="acme",
        product="Bound",
        version="1.0",
        seats=10,
        expires=datetime.date(2027, 12, 31),
        issued=DAY,
        serial=serial,
        binding=binding,
    ).text()


def test_binding_is_inside_the_signed_code() -> None:
    kit = make_kit()
    text = bound_code(kit.vendor_private, tuple(IDS.values()))
    code = parse_code(text)
    assert code.binding == tuple(sorted(IDS.values()))
    assert code.as_json()["binding"] == sorted(IDS.values())
    assert "bound to 3 servers" in code.describe()
    verify_code(code, load_public(kit.vendor_public))
    # another binding under the same signature does not verify
    moved = dataclasses.replace(code, binding=tuple(sorted(OTHER.values())))
    with pytest.raises(SignatureError):
        verify_code(moved, load_public(kit.vendor_public))
    unbound = parse_code(kit.code(seats=1, serial="U"))
    assert unbound.binding == ()
    assert unbound.as_json()["binding"] == "unbound"
    assert "bound" not in unbound.describe()


@pytest.mark.parametrize(
    ("binding", "why"),
    [
        (("xyz",), "not a server identity"),
        (("a" * 32, "a" * 32), "listed twice"),
        (tuple(f"{i:032x}" for i in range(12)), "at most 11"),
    ],
)
def test_malformed_binding_refused(binding: tuple[str, ...], why: str) -> None:
    kit = make_kit()
    with pytest.raises(CodeError, match=why):
        bound_code(kit.vendor_private, binding)


def test_identities_file_round_trip_and_errors() -> None:
    ids = PoolIdentities("p1", tuple(IDS.items()))
    text = render_identities(ids)
    assert parse_identities(text, file="f") == ids
    with pytest.raises(InputError) as err:
        parse_identities(text.replace("b" * 32, "nothex"), file="p.ids")
    assert (err.value.file, err.value.line, err.value.field) == ("p.ids", 6, "identity")
    with pytest.raises(InputError, match="not an identities file"):
        parse_identities("hello\n", file="f")
    with pytest.raises(InputError, match="listed twice"):
        parse_identities(text + "server D " + "a" * 32 + "\n", file="f")


def test_majority_of_bound_servers_needed() -> None:
    code = parse_code(bound_code(make_kit().vendor_private, tuple(IDS.values())))
    everyone = frozenset(IDS.values())
    assert binding_refusal(code, IDS["A"], everyone) is None
    assert binding_refusal(code, IDS["A"], frozenset({IDS["A"], IDS["B"]})) is None
    why = binding_refusal(code, IDS["A"], frozenset({IDS["A"]}))
    assert why == (
        "code Bound 1.0 serial B1 is bound to 3 servers; 1 of them in this pool and in "
        "contact, 2 needed"
    )
    why = binding_refusal(code, OTHER["A"], frozenset(OTHER.values()))
    assert why is not None
    assert "servers of another pool; none of them is in this pool" in why
    assert "no identity" in (binding_refusal(code, "", frozenset()) or "")
    assert offline_refusal(code, tuple(IDS.values())) is None
    assert "0 of them are this pool's servers" in (offline_refusal(code, ("f" * 32,)) or "")


def req(client: str, lic: str = LIC) -> Request:
    return Request(pool="eng", sender=client, request_id=1, license=lic)


def test_pool_serves_a_bound_code_only_with_its_servers() -> None:
    kit = make_kit()
    pool = kit.pool()
    for sid in "ABC":
        pool.start(sid)
    pool.run(4.0)
    text = bound_code(kit.vendor_private, tuple(IDS.values()))
    [ans] = pool.ask("A", AddLicenseCode(pool="eng", sender="a", request_id=1, code=text))
    assert isinstance(ans, AdminReply)
    assert ans.ok
    pool.run(pool.now + 1.0)
    # no identities told yet (as in a plaintext pool): refused with the reason
    [deny] = pool.ask("B", req("c1"))
    assert isinstance(deny, Deny)
    assert deny.reason == "binding"
    assert "no identity" in deny.detail
    # the pool of other servers: refused, and status says why
    for sid, server in pool.servers.items():
        server.set_identities(OTHER[sid], frozenset(OTHER.values()))
    [deny] = pool.ask("B", req("c1"))
    assert isinstance(deny, Deny)
    assert deny.reason == "binding"
    assert "another pool" in deny.detail
    lic = next(x for x in pool.status("B")["licenses"] if x["license"] == LIC)
    assert lic.get("binding", "").startswith("refused: ")
    app = next(x for x in pool.status("B")["licenses"] if x["license"] == "Application 1.0")
    assert "binding" not in app  # unbound: nothing claimed
    assert isinstance(pool.ask("B", req("c2", "Application 1.0"))[0], Authorize)
    # its own servers, a majority in contact: served
    for sid, server in pool.servers.items():
        server.set_identities(IDS[sid], frozenset({IDS["A"], IDS["B"]}))
    assert isinstance(pool.ask("B", req("c1"))[0], Authorize)
    lic = next(x for x in pool.status("B")["licenses"] if x["license"] == LIC)
    assert lic.get("binding") == "bound"
    # B loses contact with the others: its renewals are refused too
    pool.servers["B"].set_identities(IDS["B"], frozenset({IDS["B"]}))
    [deny] = pool.ask("B", req("c1"))
    assert isinstance(deny, Deny)
    assert deny.reason == "binding"
    assert "1 of them in this pool and in contact, 2 needed" in deny.detail
