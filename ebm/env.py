"""Every ``EBM_*`` environment variable is read here, and nowhere else.

Flags: ``""`` (or unset), ``0``, ``false``, ``no``, ``off`` mean off; ``1``, ``true``, ``yes``, ``on``
mean on (any case); anything else is an error naming the variable, never a silent "on" as
``bool(os.environ.get(...))`` made of ``EBM_BF16=0``.
"""
from __future__ import annotations

import os

from ebm.errors import UsageError

OFF = ("", "0", "false", "no", "off")
ON = ("1", "true", "yes", "on")
FLAGS = ("EBM_BF16", "EBM_CHANNELS_LAST", "EBM_NO_PROGRESS", "EBM_OFFLINE")


def flag(name: str) -> bool:
    """The on/off variable ``name``; unset is off."""
    value = os.environ.get(name, "").strip().lower()
    if value in OFF:
        return False
    if value in ON:
        return True
    raise UsageError(f"environment variable {name}={os.environ[name]!r}: expected one of "
                     f"{', '.join(ON)} (on) or {', '.join(repr(v) for v in OFF)} (off)")


def positive_int(text: str, what: str) -> int:
    """``text`` as an integer ≥ 1; ``what`` (a flag or variable) names it in the error."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise UsageError(f"{what}={text!r}: expected a positive integer")
    return value


def int_var(name: str, default: int) -> int:
    """A positive-integer variable, ``default`` when unset or empty."""
    text = os.environ.get(name, "")
    return default if text.strip() == "" else positive_int(text, f"environment variable {name}")


def text_var(name: str, default: str = "") -> str:
    """A variable whose value is free text (a device name, a path); ``default`` when unset or empty."""
    return os.environ.get(name, "") or default
