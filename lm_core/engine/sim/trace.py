"""A short, readable trace of a simulated run: the last N steps plus notable events.

Recording is cheap (a tuple into a bounded deque); formatting happens only when a
failure (or `lm sim --seed N`) asks for the text.
"""

from __future__ import annotations

from collections import deque
from dataclasses import fields, is_dataclass
from typing import Any

_SKIP = frozenset({"pool", "servers", "status", "rlf_text", "code"})


def describe(msg: Any) -> str:
    """One line for a message: its type and its short fields."""
    if not is_dataclass(msg):
        return repr(msg)[:160]
    parts = []
    for f in fields(msg):
        if f.name in _SKIP:
            continue
        value = getattr(msg, f.name)
        text = repr(value)
        if len(text) > 60:
            text = text[:57] + "..."
        parts.append(f"{f.name}={text}")
    return f"{type(msg).__name__}({', '.join(parts)})"


class Trace:
    """Two bounded logs: ``steps`` (every delivery/tick/effect) and ``notes`` (faults,
    admin operations, server events, checks)."""

    def __init__(self, steps: int = 60, notes: int = 400, *, echo: bool = False) -> None:
        self.steps: deque[tuple[float, str, str, str, Any]] = deque(maxlen=steps)
        self.notes: deque[tuple[float, str, str]] = deque(maxlen=notes)
        self.echo = echo
        self.lines: list[str] = []  # everything, only when echo is on

    def step(self, t: float, kind: str, src: str, dst: str, msg: Any = None) -> None:
        self.steps.append((t, kind, src, dst, msg))
        if self.echo:
            self.lines.append(self._fmt_step((t, kind, src, dst, msg)))

    def note(self, t: float, kind: str, text: str) -> None:
        self.notes.append((t, kind, text))
        if self.echo:
            self.lines.append(f"{t:10.3f}  ** {kind:<10} {text}")

    @staticmethod
    def _fmt_step(s: tuple[float, str, str, str, Any]) -> str:
        t, kind, src, dst, msg = s
        body = "" if msg is None else describe(msg)
        return f"{t:10.3f}  {kind:<8} {src:>8} -> {dst:<8} {body}"

    def render(self, *, notes: int = 40, steps: int = 40) -> str:
        out = [f"-- notable events (last {min(notes, len(self.notes))}) --"]
        out += [f"{t:10.3f}  {k:<10} {x}" for t, k, x in list(self.notes)[-notes:]]
        out.append(f"-- last {min(steps, len(self.steps))} steps --")
        out += [self._fmt_step(s) for s in list(self.steps)[-steps:]]
        return "\n".join(out)
