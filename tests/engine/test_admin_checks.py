"""Admin, license-code and pushed-RLF checks (`admin.py`) as pure functions, without a pool."""

from __future__ import annotations

import datetime
from dataclasses import replace

import pytest

from lm_core.engine.admin import Refused, check_admin, check_code, check_rlf
from lm_core.engine.harness import make_kit
from lm_core.engine.messages import AddAllocations, AddLicenseCode, ChangeDistribution
from lm_core.engine.rlf import render_rlf
from lm_core.engine.tables import DistributionTable

LIC = "Application 1.0"


def test_change_distribution_listing_a_server_twice_is_refused() -> None:
    kit = make_kit()
    table = DistributionTable.from_rlf(kit.rlf, kit.today)
    msg = ChangeDistribution(
        pool="eng",
        sender="admin",
        request_id=1,
        license=LIC,
        distribution=(("A", 10), ("A", 20)),
    )
    with pytest.raises(Refused, match="listed twice"):
        check_admin(msg, kit.rlf, table, kit.today)


def test_valid_change_distribution_passes_and_changes_nothing() -> None:
    kit = make_kit()
    table = DistributionTable.from_rlf(kit.rlf, kit.today)
    before = table.to_sync(pool="eng", sender="A", term=1, rlf_seq=1)
    msg = ChangeDistribution(
        pool="eng",
        sender="admin",
        request_id=1,
        license=LIC,
        distribution=(("A", 50), ("B", 25), ("C", 25)),
    )
    check_admin(msg, kit.rlf, table, kit.today)
    assert table.to_sync(pool="eng", sender="A", term=1, rlf_seq=1) == before


def test_codes_already_in_pool_expired_or_of_unknown_vendor_are_refused() -> None:
    kit = make_kit()
    table = DistributionTable.from_rlf(kit.rlf, kit.today)
    with pytest.raises(Refused, match="already in the pool"):
        check_code(kit.rlf.codes[0], kit.rlf, table, kit.today)
    old = kit.code(seats=5, serial="S9", expires=datetime.date(2026, 1, 1))
    with pytest.raises(Refused, match="expired"):
        check_code(old, kit.rlf, table, kit.today)
    stranger = kit.code(seats=5, serial="S8", vendor="umbrella")
    with pytest.raises(Refused, match="unknown vendor"):
        check_code(stranger, kit.rlf, table, kit.today)
    good = kit.code(seats=5, serial="S7", kind="add")
    assert check_code(good, kit.rlf, table, kit.today).seats == 5


def test_add_allocations_needs_an_add_on_code_and_add_license_code_a_base() -> None:
    kit = make_kit()
    table = DistributionTable.from_rlf(kit.rlf, kit.today)
    base = kit.code(seats=5, serial="S6")
    with pytest.raises(Refused, match="not an add-on code"):
        check_admin(
            AddAllocations(pool="eng", sender="x", request_id=1, code=base),
            kit.rlf,
            table,
            kit.today,
        )
    orphan = kit.code(seats=5, serial="S5", kind="add", product="Other")
    with pytest.raises(Refused, match="has no base code"):
        check_admin(
            AddLicenseCode(pool="eng", sender="x", request_id=1, code=orphan),
            kit.rlf,
            table,
            kit.today,
        )


def test_pushed_rlf_must_be_newer_for_this_pool_and_signed_by_the_admin() -> None:
    kit = make_kit()
    same = render_rlf(kit.rlf)
    with pytest.raises(Refused, match="not higher"):
        check_rlf(same, kit.rlf)
    newer = kit.sign(replace(kit.rlf, sequence=kit.rlf.sequence + 1))
    assert check_rlf(render_rlf(newer), kit.rlf).sequence == kit.rlf.sequence + 1
    other = make_kit()
    forged = other.sign(
        replace(kit.rlf, sequence=kit.rlf.sequence + 1, admin_key=other.admin_public)
    )
    with pytest.raises(Refused, match=r"(?i)signature"):
        check_rlf(render_rlf(forged), kit.rlf)
    with pytest.raises(Refused):
        check_rlf("not an rlf", kit.rlf)
