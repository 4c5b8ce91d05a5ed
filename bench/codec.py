"""The client frames' codec: today's validating JSON codec against `msgspec` and bare json.

    .venv/bin/pip install -e '.[bench]'    # msgspec (and py-spy for capacity.py --profile)
    .venv/bin/python bench/codec.py [--n 20000] [--repeat 5]

What a daemon does per heartbeat: decode one ClientHeartbeat (validated: types, bounds,
no unknown key) and encode one Authorize (three servers in its list, a ticket). Rows:

* ``lm codec``          -- `lm_core.runtime.codec` (the daemon's today);
* ``lm codec, msgspec parser`` -- today's codec, every check kept, with msgspec's JSON
  parser and writer in place of the stdlib's (a NaN would be written as null: a guard
  would be needed);
* ``msgspec -> struct`` -- msgspec Structs mirroring the two messages, tagged on ``"type"``,
  bounds as `msgspec.Meta`, unknown keys refused: decode to the Struct only;
* ``msgspec -> dataclass`` -- the same, then the engine's frozen dataclass built from it
  (what the engine needs unless it moved to Structs);
* ``json, no checks``   -- `json.loads` / `json.dumps` of the same objects: the floor
  of any validating codec on the stdlib parser.

Each figure is the best of `--repeat` runs of `--n` operations (µs per operation), with
the ratio to today's codec measured in the same run. The same bytes are checked to
decode to equal messages in every row before timing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    import msgspec
except ImportError:
    raise SystemExit("bench/codec.py needs msgspec: .venv/bin/pip install -e '.[bench]'") from None
from _livepool import table

from lm_core.engine import limits
from lm_core.engine import messages as m
from lm_core.runtime.codec import Codec, default_codec

Name = Annotated[str, msgspec.Meta(max_length=limits.NAME_MAX)]
Sender = Annotated[str, msgspec.Meta(max_length=limits.SENDER_MAX)]
License = Annotated[str, msgspec.Meta(max_length=limits.LICENSE_MAX)]
Counter = Annotated[int, msgspec.Meta(ge=0, le=limits.COUNTER_MAX)]
Seats = Annotated[int, msgspec.Meta(ge=0, le=limits.HARD_LIMIT_MAX)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=limits.SECONDS_MAX)]
Ticket = Annotated[str, msgspec.Meta(max_length=256)]


class _Base(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True):
    pool: Name
    sender: Sender
    term: Counter = 0


class Request(_Base, kw_only=True):
    request_id: Counter
    license: License
    count: Seats = 1


class ClientHeartbeat(_Base, kw_only=True):
    request_id: Counter
    license: License
    count: Seats = 1
    failover: bool = False
    ticket: Ticket = ""


class Release(_Base, kw_only=True):
    request_id: Counter
    license: License


class ServerAddress(msgspec.Struct, tag=True, tag_field="type", forbid_unknown_fields=True):
    id: Name
    address: Annotated[str, msgspec.Meta(max_length=limits.NAME_MAX + 8)]


class Authorize(_Base, kw_only=True):
    request_id: Counter
    license: License
    count: Seats
    lease: Seconds
    heartbeat_interval: Seconds
    servers: tuple[ServerAddress, ...] = ()
    ticket: Ticket = ""


CLIENT = Request | ClientHeartbeat | Release


class MsgspecParsed(Codec):
    """Today's codec (every check kept) with msgspec as the JSON parser and writer only.
    Not a drop-in: msgspec writes a NaN as null where today's codec refuses it."""

    def encode(self, msg: Any) -> bytes:
        return msgspec.json.encode(self._encode_obj(msg))

    def decode(self, data: bytes, want: type[Any] = m.Message) -> Any:
        return self.from_json(msgspec.json.decode(data), want)


def bench(fn: Callable[[], Any], n: int, repeat: int) -> float:
    """Best µs per call of `fn` over `repeat` runs of `n` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    codec = default_codec()
    hb = m.ClientHeartbeat(
        pool="site", sender="ws-0417.example.com:31337:a1b2c3", request_id=123456,
        license="Application 1.0",
    )  # fmt: skip
    servers = tuple(m.ServerAddress(id=s, address=f"10.0.0.{i}:7300") for i, s in enumerate("ABC"))
    auth = m.Authorize(
        pool="site", sender="A", term=7, request_id=123456, license="Application 1.0", count=1,
        lease=6.0, heartbeat_interval=2.0, servers=servers, ticket="t" * 64,
    )  # fmt: skip
    wire_hb = codec.encode(hb)
    wire_auth = codec.encode(auth)

    dec = msgspec.json.Decoder(CLIENT)
    enc = msgspec.json.Encoder()
    s_auth = Authorize(
        pool="site", sender="A", term=7, request_id=123456, license="Application 1.0", count=1,
        lease=6.0, heartbeat_interval=2.0,
        servers=tuple(ServerAddress(id=s.id, address=s.address) for s in servers),
        ticket="t" * 64,
    )  # fmt: skip

    def to_dataclass(s: ClientHeartbeat) -> m.ClientHeartbeat:
        return m.ClientHeartbeat(
            pool=s.pool, sender=s.sender, term=s.term, request_id=s.request_id,
            license=s.license, count=s.count, failover=s.failover, ticket=s.ticket,
        )  # fmt: skip

    def auth_struct(a: m.Authorize) -> Authorize:
        return Authorize(
            pool=a.pool, sender=a.sender, term=a.term, request_id=a.request_id,
            license=a.license, count=a.count, lease=a.lease,
            heartbeat_interval=a.heartbeat_interval,
            servers=tuple(ServerAddress(id=s.id, address=s.address) for s in a.servers),
            ticket=a.ticket,
        )  # fmt: skip

    # the same bytes mean the same message in every row
    assert codec.decode(wire_hb) == hb
    assert to_dataclass(dec.decode(wire_hb)) == hb  # type: ignore[arg-type]
    assert json.loads(enc.encode(auth_struct(auth))) == json.loads(wire_auth)
    assert json.loads(wire_hb)["type"] == "ClientHeartbeat"
    for bad in (
        wire_hb.replace(b'"count":1', b'"count":-1'),
        wire_hb.replace(b'"count":1', b'"count":true'),
        wire_hb.replace(b'"ticket":""', b'"ticket":"","extra":1'),
    ):
        try:
            dec.decode(bad)
        except msgspec.ValidationError:
            pass
        else:
            raise SystemExit(f"msgspec accepted {bad!r}")

    parsed = MsgspecParsed()
    assert parsed.decode(wire_hb) == hb
    assert parsed.encode(auth) == wire_auth
    n, r = args.n, args.repeat
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    plain_auth = json.loads(wire_auth)
    rows = {
        "lm codec": (
            bench(lambda: codec.decode(wire_hb), n, r),
            bench(lambda: codec.encode(auth), n, r),
        ),
        "lm codec, msgspec parser": (
            bench(lambda: parsed.decode(wire_hb), n, r),
            bench(lambda: parsed.encode(auth), n, r),
        ),
        "msgspec -> struct": (
            bench(lambda: dec.decode(wire_hb), n, r),
            bench(lambda: enc.encode(s_auth), n, r),
        ),
        "msgspec -> dataclass": (
            bench(lambda: to_dataclass(dec.decode(wire_hb)), n, r),  # type: ignore[arg-type]
            bench(lambda: enc.encode(auth_struct(auth)), n, r),
        ),
        "json, no checks": (
            bench(lambda: json.loads(wire_hb), n, r),
            bench(lambda: dumps(plain_auth).encode(), n, r),
        ),
    }
    base_d, base_e = rows["lm codec"]
    out = [
        [
            name,
            f"{d:.2f}",
            f"{e:.2f}",
            f"{d + e:.2f}",
            f"{d / base_d:.2f}",
            f"{e / base_e:.2f}",
            f"{(d + e) / (base_d + base_e):.2f}",
        ]
        for name, (d, e) in rows.items()
    ]
    header = [
        "codec", "decode hb µs", "encode auth µs", "per heartbeat µs",
        "decode/base", "encode/base", "total/base",
    ]  # fmt: skip
    print(
        table(
            f"client frames ({len(wire_hb)} B ClientHeartbeat in, {len(wire_auth)} B Authorize "
            f"out), best of {r} x {n}",
            header,
            out,
        )
    )


if __name__ == "__main__":
    main()
