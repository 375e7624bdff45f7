"""Reading a provider's answer no further than a bound: a misbehaving provider, proxy or
impostor can send an endless body, and reading it whole would take the daemon's memory."""

from __future__ import annotations

import httpx

__all__ = ["read_bounded"]


def read_bounded(response: httpx.Response, limit: int) -> bytes | None:
    """The body of a streamed ``response``, decoded; None when it is larger than ``limit``
    bytes (refused on its declared length before anything is read)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
