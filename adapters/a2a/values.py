"""JSON values carried in A2A data parts (protobuf `google.protobuf.Value`). Pure; no I/O; imports
nothing of the gateway."""

from __future__ import annotations

from typing import Any, Final

SAFE_INTEGER: Final = 2**53
"""Beyond this a double no longer holds every integer exactly (IEEE 754; RFC 8259 §6)."""


def whole_numbers(value: Any) -> Any:
    """`value` with doubles that are whole numbers back as integers: a protobuf `Value` holds every
    number as a double, and JSON does not tell 19 from 19.0 while JSON Schema's `integer` and most
    tools do. Doubles at or beyond `SAFE_INTEGER` stay doubles (they may not be the integer sent)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < SAFE_INTEGER:
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value
