"""riskml's errors: each message names the bad value, what was expected and
where it came from (file, column, row or config key)."""

from __future__ import annotations

import errno
import functools
import numbers
import sys
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class RiskmlError(Exception):
    """Base class of every error riskml raises on purpose."""


class ConfigError(RiskmlError, ValueError):
    """A config key has a value that is not allowed."""

    def __init__(self, key: str, value: object, expected: str):
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"config key {key!r}: got {value!r}; expected {expected}")

    def __reduce__(self):  # pickles whole, so an error raised in a worker process reaches the job intact
        return type(self), (self.key, self.value, self.expected)


def whole_number(key: str, value: object, lo: int, hi: int | None = None, *, what: str = "a whole number",
                 note: str = "") -> int:
    """``value`` as an int when it is a whole number (Python or numpy, never a bool) in ``[lo, hi]``;
    otherwise a :class:`ConfigError` naming ``key``. Every whole-number setting is checked here, so
    the rule and its message are written once. ``note`` adds what the number means, in brackets."""
    ok = (isinstance(value, numbers.Integral) and not isinstance(value, bool)
          and value >= lo and (hi is None or value <= hi))
    if not ok:
        bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ConfigError(key, value, f"{what} {bounds}" + (f" ({note})" if note else ""))
    return int(value)


def fraction(key: str, value: object) -> float:
    """``value`` as a float strictly between 0 and 1 (a share of rows or borrowers), else a :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ConfigError(key, value, "a number strictly between 0 and 1")
    return float(value)


class SchemaError(RiskmlError, ValueError):
    """Input data does not follow a column contract (missing column, wrong type)."""


class InputError(RiskmlError, OSError):
    """An input file or folder cannot be read."""


class ModelError(RiskmlError, ValueError):
    """A model artefact is missing, corrupt, or does not match the input."""


class BatchError(RiskmlError):
    """A batch job's own invariant failed (e.g. conservation of borrowers); nothing was written."""


class LeakageError(RiskmlError):
    """A feature predicts the target too well to be honest."""


#: write failures of the machine, not of riskml: said in one line by the entry points
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def exit_on_error(prog: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate an entry point so a :class:`RiskmlError`, a full or read-only disk, or a failing
    tracking store ends it with one clear line on stderr and exit status 1, not a traceback (put it
    under ``@hydra.main``); anything else is a bug and keeps its traceback."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def entry(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                line = _one_line(e)
                if line is None:
                    raise
                sys.exit(f"{prog}: {line}")

        return entry

    return wrap


def _one_line(e: Exception) -> str | None:
    if isinstance(e, RiskmlError):
        return str(e)
    if isinstance(e, OSError) and e.errno in _WRITE_ERRORS:
        # outputs are swapped in whole, so the earlier ones stand and nothing half-written has their names
        return (f"{e.filename or 'an output'}: {e.strerror or e} ({errno.errorcode.get(e.errno, e.errno)}); "
                "nothing was replaced: earlier outputs stand as they were")
    if type(e).__module__.startswith("mlflow"):
        # the tracking store failed (a server gone mid-run, a store that refuses): MLflow's first line
        text = str(e).strip()
        return f"MLflow: {text.splitlines()[0] if text else type(e).__name__}"
    return None
