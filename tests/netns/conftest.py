"""Real daemons in network namespaces, cut off and healed for real (see `netlab.py`).

Skipped, with the reason, where network namespaces cannot be made (not root, no
iproute2, no `ip netns`). Every namespace, veth pair and bridge a test made is deleted
in teardown, even on failure, and a failing test prints the tail of each daemon's log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .netlab import NetLab, NetPool, unavailable, write_net_pool

_WHY = unavailable()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _WHY is None:
        return
    skip = pytest.mark.skip(reason=f"real partitions need network namespaces: {_WHY}")
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


@pytest.fixture
def net_pool(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NetPool]:
    """Servers A, B, C, each in its own namespace, TLS, the RLF's default timings,
    100 seats as A:40 B:30 C:30; all started and listening."""
    lab = NetLab(["A", "B", "C"])
    pool: NetPool | None = None
    try:
        lab.create()
        pool = write_net_pool(lab, tmp_path, dist={"A": 40, "B": 30, "C": 30})
        pool.start_all()

        async def listening() -> None:
            assert pool is not None
            await asyncio.gather(*(pool.wait_listening_async(sid) for sid in pool.ids))

        asyncio.run(listening())
        yield pool
    finally:
        if pool is not None:
            pool.stop_all()
            rep: Any = getattr(request.node, "rep_call", None)
            if rep is not None and rep.failed:
                print(pool.log_tail(60))
        lab.destroy()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep
