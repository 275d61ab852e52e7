"""The API's JSON parser: DRF's, with a bound on how deeply a body may nest."""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# No request body of this API nests deeper than 3; 32 leaves room for any client's wrapping while keeping
# far below the ~1,000 levels at which Python's json module (and every recursive walk after it) overflows.
MAX_DEPTH = 32


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects inside ``value`` nest more than ``limit`` levels (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class JSONParser(parsers.JSONParser):
    """A body nested deeper than ``MAX_DEPTH`` is a 400 like any other unreadable JSON, never a crash."""

    def parse(self, stream, media_type=None, parser_context=None):
        too_deep = ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if nests_deeper_than(data, MAX_DEPTH):
            raise too_deep
        return data
