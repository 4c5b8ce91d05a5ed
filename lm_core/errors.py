"""The project's error family.

Every error `lm` raises on purpose is an `LmError`. Two branches matter to the front ends:

* `InputError` -- the user's input is wrong (a file, a flag, a code). The CLI prints
  ``str(err)`` as one line on stderr and exits 2. Its string names the file, the line and
  the field when they are known: ``pool.rlf:12: distribution.Application 1.0: sum 120
  exceeds hard limit 100``.
* `RefusedError` -- a valid request that the pool refused. The CLI exits 1.

Anything else (a bug) is not an `LmError`.
"""

from __future__ import annotations


class LmError(Exception):
    """Base of every error the project raises on purpose."""


class InputError(LmError):
    """Bad user input: a malformed or invalid file, flag or code (exit 2)."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.field = field

    def located(
        self, *, file: str | None = None, line: int | None = None, field: str | None = None
    ) -> InputError:
        """A copy of this error (same class) with missing location parts filled in."""
        err = type(self)(
            self.message,
            file=self.file if self.file is not None else file,
            line=self.line if self.line is not None else line,
            field=self.field if self.field is not None else field,
        )
        err.__cause__ = self.__cause__
        return err

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        if self.field:
            where += f"{self.field}: "
        return where + self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.message, self.file, self.line, self.field))


def _rebuild(
    cls: type[InputError], message: str, file: str | None, line: int | None, field: str | None
) -> InputError:
    return cls(message, file=file, line=line, field=field)


class SignatureError(InputError):
    """A signature failed; the message says which ("admin signature", "vendor 'acme'
    signature on code #2 (Application 1.0)")."""


class CodeError(InputError):
    """A malformed license code (or a malformed key)."""


class RlfError(InputError):
    """A malformed or invalid RLF."""


class ExpiredError(InputError):
    """A license code is past its expiry date."""


class RefusedError(LmError):
    """A valid request that the pool refused (exit 1)."""
