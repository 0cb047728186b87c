"""Reading the HTTP API's form fields (docs/protocol.md "HTTP API"): a leaf module, so the
aiohttp routes (server/http_api.py) and the lean Send path (server/http_lean.py) read fields
the same way.

A form is whatever aiohttp's ``request.post()`` returns (urlencoded or multipart) or the
same MultiDict built by the lean path: the first value of a repeated field wins.
"""

from __future__ import annotations

import re
from typing import Any

from multidict import MultiMapping

Form = MultiMapping[Any]


class BadInput(ValueError):
    """A form value the API refuses; the text is returned as ``msg``."""


def field(form: Form, name: str) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):  # a file upload where a plain field was expected
        raise BadInput(f"{name} must be a plain form field, not a file")
    return value


# What Go's strconv.Atoi takes (the original parses delayTime with it): an optional sign
# and ASCII digits, nothing else. Python's int() also takes " 5", "1_0" and non-ASCII
# digits such as "５", which the original refuses.
GO_INTEGER = re.compile(r"[+-]?[0-9]+")


def int_field(form: Form, name: str, default: int | None = None) -> int:
    raw = field(form, name)
    if not raw.strip():
        if default is not None:
            return default
        raise BadInput(f"{name} is required and must be an integer")
    if GO_INTEGER.fullmatch(raw) is None:
        raise BadInput(f"{name} must be an integer, got {raw!r}")
    return int(raw)
