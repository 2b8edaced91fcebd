"""What an event is: its source, category, type, symbol and description template (the catalogues are
eventids.py for ESE's events and ownevents.py for ShadowStore's own)."""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple


class EventType(Enum):
    INFORMATION = "Information"
    WARNING = "Warning"
    ERROR = "Error"


class EventSpec(NamedTuple):
    source: str
    category: str
    type: EventType
    symbol: str
    template: str


INFO, WARN, ERR = EventType.INFORMATION, EventType.WARNING, EventType.ERROR
