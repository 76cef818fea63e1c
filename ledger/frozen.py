"""Cheap construction of the frozen, slotted dataclasses built on every event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

SlotSetter = Callable[[Any, Any], None]


def slot_setters(cls: type) -> tuple[SlotSetter, ...]:
    """The slot setters of the frozen ``slots=True`` dataclass ``cls``, in field order.

    A hand-written ``__init__`` calls them to write each field once: cheaper than the generated
    ``__init__``, which goes through ``object.__setattr__`` per field, and, like it, the only
    place the FrozenInstanceError guard is bypassed. The dataclass keeps its fields, equality,
    hash, repr and pickling."""
    return tuple(cls.__dict__[f.name].__set__ for f in fields(cls))
