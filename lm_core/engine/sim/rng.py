"""The randomness the simulator needs, as a Protocol: the caller passes `random.Random(seed)`.

The engine (and so the simulator) never imports `random`; a seeded generator comes in
from the test or the CLI, so one seed replays one run exactly.
"""

from __future__ import annotations

from collections.abc import MutableSequence, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Rng(Protocol):
    """The subset of `random.Random` the simulator uses."""

    def random(self) -> float: ...
    def randint(self, a: int, b: int) -> int: ...
    def uniform(self, a: float, b: float) -> float: ...
    def choice(self, seq: Sequence[T]) -> T: ...
    def sample(self, population: Sequence[T], k: int) -> list[T]: ...
    def expovariate(self, lambd: float) -> float: ...
    def shuffle(self, x: MutableSequence[Any]) -> None: ...
