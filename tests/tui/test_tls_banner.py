"""The console names a TLS failure instead of showing a healthy pool as down: the real
`AdminSource` against real daemons (TLS), polled with another pool's CA."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lm_core.runtime.localpool import LocalPool, PoolKeys, server_ids, write_pool, write_tls
from lm_core.runtime.tlsconfig import load_tls_dir
from lm_tui import viewmodel as vm
from lm_tui.source import AdminSource


def test_wrong_ca_is_named_in_the_banner(tmp_path: Path) -> None:
    files = write_pool(
        tmp_path, server_ids(3), name="tlsban", keys=PoolKeys.generate(), seats=10, serial="T1"
    )
    assert files.tls_dir is not None
    other = write_tls(tmp_path / "other-ca", files.rlf)
    with LocalPool(tmp_path, files.rlf, files.rlf_path, files.tls_dir) as pool:
        pool.start_all()
        for sid in pool.ids:
            pool.wait_listening(sid)

        async def poll(tls_dir: Path) -> dict[str, object]:
            source = AdminSource(files.rlf, tls=load_tls_dir(tls_dir, "admin"), timeout=2.0)
            try:
                return await source.status()
            finally:
                await source.aclose()

        good = asyncio.run(poll(files.tls_dir))
        bad = asyncio.run(poll(other))
    assert good["tls_error"] is None
    assert not any(b.startswith("TLS") for b in vm.header_view(good, updated_age=0.0).banners)
    banners = vm.header_view(bad, updated_age=0.0).banners
    assert banners[0].startswith("TLS: wrong CA: the server's certificate is not signed by")
    assert str(other / "ca.pem") in banners[0]
    assert banners[1] == "cannot reach server A, B, C"
