"""``connectors.postgres.array_literal``: the one-join fast path gives what escaping element by
element gives (the round trip through PostgreSQL is tested in tests/integration)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connectors.postgres import array_element, array_literal


def elementwise(values: list[str]) -> str:
    return "{" + ",".join(array_element(v) for v in values) + "}"


@given(st.lists(st.text(), min_size=1, max_size=20))
def test_the_literal_equals_the_element_by_element_form(values: list[str]) -> None:
    assert array_literal(values) == elementwise(values)


def test_plain_ids_take_the_fast_path_and_special_ones_are_escaped() -> None:
    assert array_literal(["a", "b"]) == '{"a","b"}'
    assert array_literal(['a"b', "c\\d"]) == '{"a\\"b","c\\\\d"}'
    assert array_literal([]) == "{}"
