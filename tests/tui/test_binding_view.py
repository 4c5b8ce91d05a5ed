"""V1 in the TUI: each license's binding, from the servers' own verdicts in the status."""

from __future__ import annotations

from typing import Any, cast

from lm_core.engine.status_types import PoolStatus
from lm_tui.viewmodel import distribution_views


def status(binding: dict[str, str] | None) -> PoolStatus:
    lic: dict[str, Any] = {
        "license": "Bound 1.0",
        "hard_limit": 10,
        "expires": "2027-12-31",
        "pool_available": 10,
        "free_pool": 0,
        "servers": {},
        "own": {},
    }
    if binding is not None:
        lic["binding"] = binding
    return cast(
        PoolStatus, {"servers": [{"id": "A", "up": True}], "leader": "A", "licenses": [lic]}
    )


def test_binding_shown_per_license() -> None:
    [v] = distribution_views(status({"A": "unbound", "B": "unbound"}))
    assert v.binding == ""  # unbound: the panel says nothing (the code dialog does)
    [v] = distribution_views(status({"A": "bound", "B": "bound"}))
    assert v.binding == "bound to this pool"
    [v] = distribution_views(status({"A": "refused: x", "B": "bound", "C": "refused: y"}))
    assert v.binding == "bound: REFUSED on A, C"
    [v] = distribution_views(status(None))  # an older daemon: nothing claimed
    assert v.binding == ""
