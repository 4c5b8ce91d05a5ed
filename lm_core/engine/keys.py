"""Ed25519 keys as one-line printable text.

* public:  ``ed25519:<base64 of the 32 raw public bytes>`` -- this form also appears in RLFs.
* private: ``ed25519-private:<base64 of the 32-byte seed>``.

Base64 is canonical (RFC 4648 section 3.5): `decode_b64` accepts only the spelling
`base64.b64encode` writes -- padding present, pad bits zero -- so a key or a signature
has exactly one text form and a re-spelled signature is refused, not verified.

Key *files* hold the key line plus optional ``#`` comment lines and blank lines; the loaders
accept either form. Pure: no file IO here (the CLI reads and writes the files).
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from lm_core.errors import CodeError

PUBLIC_PREFIX = "ed25519:"
PRIVATE_PREFIX = "ed25519-private:"


def generate_keypair() -> tuple[str, str]:
    """A fresh key pair as (private_text, public_text), both one printable line."""
    key = Ed25519PrivateKey.generate()
    return private_text(key), public_text(key.public_key())


def private_text(key: Ed25519PrivateKey) -> str:
    """The one-line text form of a private key."""
    return PRIVATE_PREFIX + base64.b64encode(key.private_bytes_raw()).decode("ascii")


def public_text(key: Ed25519PublicKey) -> str:
    """The one-line text form of a public key: ``ed25519:<base64>``."""
    return PUBLIC_PREFIX + base64.b64encode(key.public_bytes_raw()).decode("ascii")


def _key_line(text: str, *, what: str, file: str | None) -> tuple[str, int]:
    """The one non-comment, non-blank line of a key file and its line number."""
    found: list[tuple[str, int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            found.append((line, number))
    if len(found) != 1:
        raise CodeError(
            f"expected exactly one {what} key line, found {len(found)}",
            file=file,
            line=found[1][1] if len(found) > 1 else None,
        )
    return found[0]


def decode_b64(text: str) -> bytes | None:
    """The bytes of canonical standard base64 `text`, or None if it is anything else
    (bad characters, missing padding, non-zero pad bits, whitespace)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def _raw32(body: str, *, what: str, file: str | None, line: int | None) -> bytes:
    raw = decode_b64(body)
    if raw is None:
        raise CodeError(f"{what} key is not valid canonical base64", file=file, line=line)
    if len(raw) != 32:
        raise CodeError(f"{what} key must hold 32 bytes, got {len(raw)}", file=file, line=line)
    return raw


def load_private(text: str, *, file: str | None = None) -> Ed25519PrivateKey:
    """Parse a private key (text or key-file content); raises `CodeError`."""
    line, number = _key_line(text, what="private", file=file)
    if line.startswith(PUBLIC_PREFIX):
        raise CodeError(
            "this is a public key; a private key (ed25519-private:...) is needed",
            file=file,
            line=number,
        )
    if not line.startswith(PRIVATE_PREFIX):
        raise CodeError(f"not a private key (expected {PRIVATE_PREFIX}...)", file=file, line=number)
    raw = _raw32(line[len(PRIVATE_PREFIX) :], what="private", file=file, line=number)
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_public(text: str, *, file: str | None = None) -> Ed25519PublicKey:
    """Parse a public key (``ed25519:<base64>`` or key-file content); raises `CodeError`."""
    line, number = _key_line(text, what="public", file=file)
    if line.startswith(PRIVATE_PREFIX):
        raise CodeError(
            "this is a private key; give the public key (.pub) instead", file=file, line=number
        )
    if not line.startswith(PUBLIC_PREFIX):
        raise CodeError(f"not a public key (expected {PUBLIC_PREFIX}...)", file=file, line=number)
    raw = _raw32(line[len(PUBLIC_PREFIX) :], what="public", file=file, line=number)
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise CodeError("not a valid Ed25519 public key", file=file, line=number) from None


def normalize_public(text: str, *, file: str | None = None) -> str:
    """The canonical one-line form of a public key given as text; raises `CodeError`."""
    return public_text(load_public(text, file=file))
