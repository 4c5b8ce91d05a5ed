"""The console colours exactly the event kinds the engine emits."""

from __future__ import annotations

from lm_core.engine.vocab import EventKind
from lm_tui.app import KIND_STYLE


def test_every_event_kind_has_a_style_and_no_other() -> None:
    assert set(KIND_STYLE) == set(EventKind)
