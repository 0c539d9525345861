"""Asking a running Flower over HTTP, with or without its basic-auth credentials."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request


def flower_get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    """(HTTP status, body) of GET `url`; an error status is an answer here, not an exception."""
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(":".join(auth).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
