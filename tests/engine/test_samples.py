"""sample_rlfs/: every good pool verifies, every bad file fails with its named error,
and the files on disk are exactly what sample_rlfs/make_samples.py makes."""

from __future__ import annotations

import datetime
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from lm_core import errors
from lm_core.engine.keys import load_public
from lm_core.engine.rlf import check_expiry, parse_rlf, verify_rlf

SAMPLES = Path(__file__).resolve().parents[2] / "sample_rlfs"
TODAY = datetime.date(2026, 11, 24)
ADMIN = load_public((SAMPLES / "keys" / "DEMO_ONLY_admin.pub").read_text())
GOOD = sorted(SAMPLES.glob("*.rlf"))
BAD = sorted((SAMPLES / "bad").glob("*.rlf"))

EXPECTED_GOOD = {
    "patent.rlf": {"Application 1.0": ({"A": 40, "B": 30, "C": 30}, 0)},
    "even.rlf": {"Application 1.0": ({"A": 33, "B": 33, "C": 33}, 1)},
    "five.rlf": {"Application 1.0": (dict.fromkeys("ABCDE", 20), 0)},
    "eleven.rlf": {"Application 1.0": (dict.fromkeys("ABCDEFGHIJK", 9), 1)},
    "multi_vendor.rlf": {
        "Application 1.0": ({"A": 40, "B": 40, "C": 40}, 0),
        "Designer 2.1": ({"A": 5, "B": 0, "C": 0}, 5),
        "Solver 5": ({"A": 10, "B": 10, "C": 10}, 0),
    },
}
REQUIRED_BAD = {
    "tampered_code",
    "tampered_body",
    "wrong_admin_key",
    "distribution_over_seats",
    "unknown_server",
    "expired_code",
    "syntax_error",
    "duplicate_server_id",
}


def check_file(path: Path) -> None:
    """What `lm rlf verify FILE --admin-key DEMO_ONLY_admin.pub` checks."""
    text = path.read_text()
    rlf = parse_rlf(text, file=path.name)
    verify_rlf(rlf, admin_key=ADMIN, file=path.name, text=text)
    check_expiry(rlf, TODAY, file=path.name, text=text)


def test_the_sample_set_is_complete() -> None:
    assert {p.name for p in GOOD} == set(EXPECTED_GOOD)
    assert {p.stem for p in BAD} >= REQUIRED_BAD
    expects = {p.stem for p in (SAMPLES / "bad").glob("*.expect")}
    assert expects == {p.stem for p in BAD}


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_sample_verifies(path: Path) -> None:
    check_file(path)
    rlf = parse_rlf(path.read_text())
    assert rlf.initial_distribution(TODAY) == EXPECTED_GOOD[path.name]
    assert rlf.signature is not None


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_sample_fails_with_its_named_error(path: Path) -> None:
    kind, _, expected = path.with_suffix(".expect").read_text().strip().partition(": ")
    error_class = getattr(errors, kind)
    with pytest.raises(error_class) as info:
        check_file(path)
    assert expected in str(info.value)
    assert info.value.file == path.name
    assert info.value.line is not None


def _load_maker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_files_on_disk_match_the_generator() -> None:
    built: dict[str, str] = _load_maker().build()
    for rel, text in built.items():
        assert (SAMPLES / rel).read_text() == text, f"{rel} is stale: run make_samples.py"
