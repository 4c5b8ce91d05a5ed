"""Metrics as pure functions: a status snapshot rendered by prometheus_client and parsed
back with its parser; a bad --metrics address is refused by the argument parser."""

from __future__ import annotations

from typing import Any, cast

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from lm_core.engine.status_types import ServerStatus
from lm_core.runtime.metrics import PoolCollector, Snapshot, UsageCounters
from lm_core.runtime.startup import _parser


def follower_status() -> ServerStatus:
    st: dict[str, Any] = {
        "id": "B",
        "pool": "p",
        "role": "follower",
        "term": 3,
        "leader": "A",
        "rlf_seq": 2,
        "config_version": 5,
        "config_term": 3,
        "serving": True,
        "not_serving_reason": None,
        "majority": {"up": 3, "size": 3, "ok": True},
        "peers": {
            "A": {"up": True, "last_heartbeat_age": 0.2},
            "C": {"up": True, "last_heartbeat_age": None},
        },
        "licenses": [
            {
                "license": "App 1",
                "hard_limit": 10,
                "expires": "2027-01-01",
                "pool_available": None,
                "free_pool": None,
                "servers": {
                    "A": None,
                    "B": {"distribution": 4, "in_use": 3, "available": 1},
                    "C": None,
                },
            }
        ],
        "licenses_total": 1,
        "clients": [],
        "clients_total": 0,
        "events": [],
    }
    return cast(ServerStatus, st)


def scrape(snap: Snapshot | None) -> dict[str, list[tuple[dict[str, str], float]]]:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(PoolCollector(lambda: snap))
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def test_follower_view_and_counters() -> None:
    counters = UsageCounters()
    for kind, reason in (("grant", ""), ("grant", ""), ("deny", "no_seats"), ("renew", "")):
        counters.note(kind, "App 1", 1, reason)
    got = scrape(Snapshot(follower_status(), counters))
    assert got["lm_up"] == [({}, 1.0)]
    assert ({"pool": "p", "server": "B", "lm_role": "follower"}, 1.0) in got["lm_role"]
    assert got["lm_license_in_use"] == [({"pool": "p", "server": "B", "license": "App 1"}, 3.0)]
    assert got["lm_grants_total"][0][1] == 2
    assert got["lm_denials_total"] == [
        ({"pool": "p", "server": "B", "license": "App 1", "reason": "no_seats"}, 1.0)
    ]
    ages = {lab["peer"]: v for lab, v in got["lm_peer_heartbeat_age_seconds"]}
    assert ages == {"A": 0.2}  # no heartbeat seen from C: no sample, not a made-up 0
    assert "lm_pool_row_in_use" not in got  # a follower's table covers only itself
    assert "lm_fenced_servers" not in got


def test_stuck_loop_is_lm_up_0() -> None:
    assert scrape(None) == {"lm_up": [({}, 0.0)]}


@pytest.mark.parametrize("bad", ["nonsense", "127.0.0.1:0", "127.0.0.1:99999", ":9464"])
def test_bad_metrics_address_is_exit_2(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--rlf", "x", "--server-id", "A", "--data-dir", "d", "--insecure-loopback"]
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args([*args, "--metrics", bad])
    assert exc.value.code == 2
    assert "--metrics" in capsys.readouterr().err
