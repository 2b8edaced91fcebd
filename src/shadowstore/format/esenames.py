"""The names of a real Windows ESE instance's log, checkpoint and reserve files (research/ese.md §5).

The base name is 3 characters (``edb``, ``E00``, ``R00``, ``USS``) and logs end in ``.log`` (ESE98 names) or
``.jtx``. The current log is ``<base>.log``; closed generations are the base and the generation in upper-case hex,
5 digits (``edb00001.log``, ``E000080A.log``) or 8 (``edb0000000A.log``); the next log prepared ahead is
``<base>tmp.log``; the checkpoint is ``<base>.chk`` (or ``.jcp``). Reserve logs are ``<base>res00001.jrs`` (always
5 digits) and, in old instances, ``res1.log`` and ``res2.log``: they are not part of the log set.
"""

from __future__ import annotations

import re
from typing import NamedTuple

LOG_EXTENSIONS = (".log", ".jtx")
CHECKPOINT_EXTENSIONS = {".log": ".chk", ".jtx": ".jcp"}
_LOG = re.compile(r"(?P<base>[A-Za-z0-9]{3})(?P<gen>[0-9A-F]{5}|[0-9A-F]{8})?(?P<ext>\.log|\.jtx)", re.IGNORECASE)
_TMP = re.compile(r"(?P<base>[A-Za-z0-9]{3})tmp(?P<ext>\.log|\.jtx)", re.IGNORECASE)
_RESERVE = re.compile(r"(?:[A-Za-z0-9]{3}res[0-9A-Fa-f]{5}\.jrs|res[12]\.log)", re.IGNORECASE)


class LogName(NamedTuple):
    """What a file name says: its base, its generation (None for the current log), and its extension."""

    base: str
    generation: int | None
    extension: str

    @property
    def current(self) -> bool:
        return self.generation is None


def parse_log_name(name: str) -> LogName | None:
    """The log file ``name`` stands for, or None when it is not a log generation's name (a reserve log and the
    log prepared ahead included). Generation digits must be upper-case, as ESE writes them."""
    if _TMP.fullmatch(name) or _RESERVE.fullmatch(name):
        return None
    match = _LOG.fullmatch(name)
    if match is None:
        return None
    digits = match.group("gen")
    if digits is not None and (digits != digits.upper() or int(digits, 16) == 0):
        return None
    generation = int(digits, 16) if digits is not None else None
    return LogName(match.group("base"), generation, match.group("ext").lower())


def is_reserve_log(name: str) -> bool:
    return _RESERVE.fullmatch(name) is not None


def is_prepared_log(name: str) -> bool:
    """``<base>tmp.log``/``.jtx``: the next generation prepared ahead, not yet part of the set."""
    return _TMP.fullmatch(name) is not None


def archived_name(base: str, generation: int, extension: str = ".log") -> str:
    """``edb00001.log`` while the generation fits 5 hex digits, else 8 (``edb00100000.log``)."""
    digits = 5 if generation <= 0xFFFFF else 8
    return f"{base}{generation:0{digits}X}{extension}"


def checkpoint_names(base: str) -> tuple[str, str]:
    return f"{base}.chk", f"{base}.jcp"
