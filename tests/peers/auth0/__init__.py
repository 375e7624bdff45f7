"""An Auth0 emulator for tests: the Management API v2 client and credential routes, the token
endpoint (client secret, Private Key JWT, mTLS through the customer-edge headers), PAR with
signed request objects, per-tenant rate limits and injected faults.

Written from ``shared/reference/auth0-credentials.md`` (§1-5, §9) and
``shared/reference/identity-providers.md`` §1, not from any adapter of ours: it is the peer that
catches an adapter's mistakes. Use it in-process (``with Auth0Emulator(config) as emu``), or as
a process (``python -m tests.peers.auth0 --port 0``, see ``__main__``; ``emulator_process``).
"""

from tests.peers.auth0.clock import Clock
from tests.peers.auth0.config import (
    ALL_SCOPES,
    EmulatorConfig,
    FaultRates,
    ManagementApp,
    RateLimit,
)
from tests.peers.auth0.process import emulator_process
from tests.peers.auth0.server import Auth0Emulator

__all__ = [
    "ALL_SCOPES",
    "Auth0Emulator",
    "Clock",
    "EmulatorConfig",
    "FaultRates",
    "ManagementApp",
    "RateLimit",
    "emulator_process",
]
