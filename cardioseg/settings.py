"""Checks of user settings (bundle overrides, command options) before any work or any file is written.

A bundle run learns of a bad setting late and deep (a batch size of 0 fails inside the first step, an
image size of 48 inside the decoder), after it has made its run folder. Each check here names the setting,
the value and what is allowed, as a :class:`SettingError`, so ``cardioseg`` prints one line and exits 2.
Command lines pass strings ("null", "false"), so the parsers here accept those spellings too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import CardiosegError

_NONE_WORDS = ("", "none", "null", "auto")
_TRUE_WORDS = ("true", "1", "yes", "on")
_FALSE_WORDS = ("false", "0", "no", "off", "none", "null", "")


class SettingError(CardiosegError):
    """A setting with a value outside what it allows."""

    def __init__(self, name: str, value: Any, allowed: str):
        self.name, self.value, self.allowed = name, value, allowed
        super().__init__(f"setting {name!r} is {value!r}: {allowed}")

    def within(self, prefix: str) -> SettingError:
        """The same error for a setting nested in ``prefix`` (``finetune#epochs``, MONAI's id separator)."""
        return SettingError(f"{prefix}#{self.name}", self.value, self.allowed)


def is_none(value: Any) -> bool:
    """None, or a command line's spelling of it (``--encoder null`` arrives as the string "null")."""
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)


def is_off(value: Any) -> bool:
    """False, None, or a command line's spelling of either ("false", "0", "null", ...)."""
    return value is None or value is False or (isinstance(value, str) and value.strip().lower() in _FALSE_WORDS)


def as_flag(value: Any, name: str = "flag") -> bool:
    """A boolean setting; also accepts the strings a command line passes ("true", "False", "0", ...)."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise SettingError(name, value, "expected true or false")
    if value is None or isinstance(value, bool | int):
        return bool(value)
    raise SettingError(name, value, "expected true or false")


def whole_number(name: str, value: Any, minimum: int | None = None, optional: bool = False) -> int | None:
    """An integer setting (``optional``: None allowed), at least ``minimum``."""
    if optional and is_none(value):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SettingError(name, value, "expected a whole number")
    try:
        number = float(value)
    except ValueError:
        raise SettingError(name, value, "expected a whole number") from None
    if not math.isfinite(number) or number != int(number):
        raise SettingError(name, value, "expected a whole number")
    if minimum is not None and number < minimum:
        raise SettingError(name, value, f"must be at least {minimum}")
    return int(number)


def real_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """A finite real setting within ``[low, high]`` (ends excluded where ``open_*``)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise SettingError(name, value, "expected a number") from None
    too_low = low is not None and (number <= low if open_low else number < low)
    too_high = high is not None and (number >= high if open_high else number > high)
    if not math.isfinite(number) or too_low or too_high:
        left = "(" if open_low else "["
        right = ")" if open_high else "]"
        interval = f"{left}{-math.inf if low is None else low:g}, {math.inf if high is None else high:g}{right}"
        raise SettingError(name, value, f"must be a finite number in {interval}")
    return number


def choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """One of a fixed set of words."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise SettingError(name, value, f"choose one of {', '.join(allowed)}")
    return value


def multiple_of(name: str, value: Any, divisor: int) -> int:
    """A positive whole number divisible by ``divisor`` (network input sizes)."""
    number = whole_number(name, value, minimum=1)
    if number % divisor:
        below, above = number // divisor * divisor, (number // divisor + 1) * divisor
        examples = f"{below} or {above}" if below else str(above)
        raise SettingError(name, value, f"must be a positive multiple of {divisor} (e.g. {examples})")
    return number


def existing_path(name: str, value: Any, kind: str = "any") -> Path:
    """A path that exists (``kind``: "file", "dir" or "any")."""
    if is_none(value):
        raise SettingError(name, value, "a path is required")
    path = Path(str(value))
    if not path.exists():
        raise SettingError(name, str(path), "does not exist")
    if kind == "file" and not path.is_file():
        raise SettingError(name, str(path), "is not a file")
    if kind == "dir" and not path.is_dir():
        raise SettingError(name, str(path), "is not a folder")
    return path


def output_folder(name: str, value: Any) -> Path:
    """A folder to write into: absent (it will be made) or a folder, never a file."""
    if is_none(value):
        raise SettingError(name, value, "an output folder is required")
    path = Path(str(value))
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise SettingError(name, str(path), f"{parent} is a file, not a folder")
        if parent.exists():
            break
    return path


def output_file(name: str, value: Any, overwrite: bool = False) -> Path:
    """A file to write: its folder may not exist yet; an existing file is replaced only with ``overwrite``,
    and a folder never is."""
    path = output_folder(name, Path(str(value)).parent) / Path(str(value)).name
    if path.is_dir():
        raise SettingError(name, str(path), "is a folder; name a file to write")
    if path.exists() and not overwrite:
        raise SettingError(name, str(path), "exists already (pass --overwrite to replace it)")
    return path
