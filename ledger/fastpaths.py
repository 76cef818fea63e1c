"""The speed helpers, in one place: every fast path that replaces plain code on the hot path,
and the test that holds it equal to the plain code it replaces.

- **Hand-written ``__init__`` writing each slot once** (``slot_setters`` below): ``Money``,
  ``Posting``, ``JournalEntry``, ``EntryContext``, ``RevenueShare``; ``Consumed`` in
  ``connectors.kafka``. Held by ``tests/unit/test_ledger_fastpath.py`` (values stay frozen,
  equal, hashable; ``replace`` re-validates) and
  ``test_ledger_store_rows.py::test_consumed_stays_a_frozen_value``.
- **``PaymentState.updated``**: ``object.__new__`` and slot setters instead of
  ``dataclasses.replace``. Held by ``test_state_updated_equals_dataclasses_replace``.
- **``journal.entry_id_for``**: the UUIDv5 built from the SHA-1 digest directly. Held by
  ``test_entry_id_is_the_uuid5_of_event_and_kind`` and ``test_ids.py``.
- **``journal.merge``**: a set check before summing postings. Held by
  ``test_merge_equals_the_plain_merge``.
- **Payment states as JSON by orjson straight from the dataclasses**
  (``connectors.ledger_store.state_json``). Held by
  ``test_ledger_store_rows.py::test_state_json_equals_json_dumps_of_to_dict``.
- **Journal COPY text by a C formatter** (``connectors/_copytext.c``). Held by
  ``test_ledger_store_rows.py`` against the Python formatter.
- **Avro by generated code and a C encoder** (``schemas.avro``, ``schemas/_avroenc.c``). Held by
  ``test_encoder.py`` and ``test_avro_schemas.py`` against fastavro.
- **Input rules compiled per event class** (``ledger.validation``). Held by
  ``test_input_rules.py`` against the rules written plainly.
- **HTTP ingest's JSON decoded by msgspec into mirrored structs**, events built by generated
  code that writes each slot once where the dataclass's ``__init__`` is the generated one
  (``schemas.json_fast``); anything it cannot decode goes to the reference parser
  (``schemas.json_events``). Held by ``test_json_fast.py`` against the reference (equal,
  still frozen).
- **Content fingerprints by ``operator.attrgetter``** (``connectors.fingerprint``). Held by
  ``test_fingerprint.py::test_the_fingerprint_of_a_fixed_event_never_changes``.

A new fast path comes with its row here and its equality test; ``make bench-ab`` says whether it
pays for itself.
"""

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
