"""Webhooks: the notifications outbox in the database, and the signed HTTP delivery."""

from orchestrator.adapters.webhooks.outbox import MemoryOutbox, SqlOutbox
from orchestrator.adapters.webhooks.sender import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    HttpSender,
    sign,
)

__all__ = ["EVENT_ID_HEADER", "EVENT_TYPE_HEADER", "SIGNATURE_HEADER", "HttpSender",
           "MemoryOutbox", "SqlOutbox", "sign"]
