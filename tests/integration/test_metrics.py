"""`lm-daemon --metrics`: a live pool scraped over HTTP, parsed with prometheus_client."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lm_core.runtime.localpool import free_ports

from .conftest import APP, Pool, all_up, held_total

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value(m: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    hits = [v for lab, v in m.get(name, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(hits) == 1, (name, labels, m.get(name))
    return hits[0]


def test_scrape_leader_and_follower(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory()
    ports = dict(zip(pool.ids, free_ports(3), strict=True))
    for sid in pool.ids:
        pool.extra_args = ["--metrics", f"127.0.0.1:{ports[sid]}"]
        pool.start(sid)
    st = pool.wait(all_up, "three servers up with a leader")
    leader = st["leader"]
    follower = next(s for s in pool.ids if s != leader)
    pool.hold("--license", APP, "--client-id", "m-1", "--server", follower, "--seconds", "600")
    pool.wait(lambda st: held_total(st) == 1, "m-1 holds a seat")
    out = pool.lm(
        "client", "hold", "--license", "No Such 1.0", "--server", follower, "--seconds", "1"
    )
    assert out.returncode != 0, out.stdout

    deadline = time.monotonic() + 20
    while True:  # the leader learns the follower's in-use with its next ACK
        lm = scrape(ports[leader])
        fm = scrape(ports[follower])
        rows = {lab["row"]: v for lab, v in lm.get("lm_pool_row_in_use", [])}
        if rows.get(follower) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)

    assert value(lm, "lm_up") == 1
    assert value(lm, "lm_role", server=leader, lm_role="leader") == 1
    assert value(fm, "lm_role", server=follower, lm_role="follower") == 1
    assert value(fm, "lm_role", server=follower, lm_role="leader") == 0
    assert value(lm, "lm_term", server=leader) == st["term"]
    assert value(lm, "lm_majority_up", server=leader) == 3
    assert value(lm, "lm_majority_ok", server=leader) == 1
    assert value(lm, "lm_rlf_sequence", server=leader) == pool.rlf.sequence
    assert value(lm, "lm_fenced_servers", server=leader) == 0
    for peer in pool.ids:
        if peer != leader:
            assert value(lm, "lm_peer_up", server=leader, peer=peer) == 1
            assert value(lm, "lm_peer_heartbeat_age_seconds", server=leader, peer=peer) >= 0
    # own view on the follower: its row only, no pool-wide table
    assert value(fm, "lm_license_hard_limit", license=APP) == 100
    assert value(fm, "lm_license_in_use", license=APP) == 1
    dist = {"A": 40, "B": 30, "C": 30}
    assert value(fm, "lm_license_distribution", license=APP) == dist[follower]
    assert value(fm, "lm_license_available", license=APP) == dist[follower] - 1
    assert "lm_pool_row_in_use" not in fm
    assert value(fm, "lm_grants_total", license=APP) == 1
    assert value(fm, "lm_denials_total", license="No Such 1.0", reason="unknown_license") >= 1
    # the leader's scrape holds the pool-wide table
    assert {lab["row"] for lab, _ in lm["lm_pool_row_in_use"]} == set(pool.ids)
    assert rows[follower] == 1
    assert value(lm, "lm_pool_license_in_use", license=APP) == 1
    assert value(lm, "lm_pool_license_available", license=APP) == 99
    for sid in pool.ids:
        assert value(lm, "lm_pool_row_distribution", license=APP, row=sid) == dist[sid]


def test_metrics_port_in_use_is_one_line_exit_1(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory()
    port = free_ports(1)[0]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        pool.extra_args = ["--metrics", f"127.0.0.1:{port}"]
        proc = pool.start("A")
        assert proc.wait(timeout=30) == 1
    log = pool.log_path("A").read_text()
    assert f"cannot serve metrics on 127.0.0.1:{port}" in log
    assert "Traceback" not in log
