"""The API's only body parser: JSON that cannot reach the database or the engine as a 500.

Every value an attacker can send is judged here, once, for every endpoint: nesting deeper
than MAX_DEPTH (json's C scanner recurses and raises RecursionError), integers outside a
signed 64-bit range (PostgreSQL bigint, msgpack), NaN and infinities, invalid UTF-8, and
strings holding NUL (PostgreSQL text refuses it) or lone surrogates (not encodable as
UTF-8). A body larger than DATA_UPLOAD_MAX_MEMORY_SIZE is refused with 413.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_DEPTH = 32


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


def max_body_bytes() -> int:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _int64(text: str) -> int:
    # Judged on the digits first: int() of a 100,000-digit string is itself a cost.
    if len(text.lstrip("-")) > 19:
        raise ValueError(f"integer {text[:24]}... is outside the 64-bit range")
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"integer {text} is outside the 64-bit range")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:24]} is too large")
    return value


def _no_constants(text: str) -> float:
    raise ValueError(f"{text} is not a JSON number")


def text_problem(text: str) -> str | None:
    """Why a string cannot be stored or sent on, or None: NUL bytes and lone surrogates."""
    if "\x00" in text:
        return "text must not contain NUL characters"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "text must not contain lone surrogates (invalid Unicode)"
    return None


def check_value(data: Any) -> None:
    """Raise ValueError when a decoded JSON value nests too deep or holds unusable text.

    Iterative, so that the check itself cannot overflow the stack."""
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                raise ValueError(problem)
        elif isinstance(value, (list, dict)):
            if depth > MAX_DEPTH:
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                pending.extend((key, depth) for key in value)
                pending.extend((item, depth + 1) for item in value.values())
            else:
                pending.extend((item, depth + 1) for item in value)


def loads(raw: bytes) -> Any:
    """Decode and check a JSON body; ValueError with the reason when it is not acceptable."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"the body is not UTF-8: {error}") from None
    try:
        data = json.loads(
            text, parse_int=_int64, parse_float=_finite, parse_constant=_no_constants
        )
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    check_value(data)
    return data


class StrictJSONParser(JSONParser):
    """DRF's JSON parser with the checks above; 400 with the reason, 413 when too large."""

    def parse(self, stream, media_type=None, parser_context=None):
        if stream is None:
            return {}
        limit = max_body_bytes()
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
        try:
            return loads(raw)
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from None
