"""The emulator's configuration: one JSON-shaped object, every key optional.

``EmulatorConfig.from_dict`` refuses unknown keys (a typo in a test's config would otherwise
silently test the defaults). The same dict is accepted by ``python -m tests.peers.auth0
--config FILE`` and by ``POST /__emulator/config`` (run-time switches: everything except the
seeds ``management``, ``clients``, ``grants`` and ``generate_clients``).

Defaults follow the reference: pool cap 4 and slot cap 2 (auth0-credentials.md §3), Enterprise
production rate limit burst 50 at 16/s (identity-providers.md §1), tokens valid 86,400 s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ALL_SCOPES",
    "EmulatorConfig",
    "FaultRates",
    "ManagementApp",
    "RateLimit",
]

ALL_SCOPES: tuple[str, ...] = (
    "read:clients", "create:clients", "update:clients", "delete:clients",
    "read:client_keys", "update:client_keys",
    "read:client_credentials", "create:client_credentials", "update:client_credentials",
    "delete:client_credentials",
    "read:client_grants", "create:client_grants", "delete:client_grants",
)


@dataclass
class RateLimit:
    """A token bucket: ``burst`` requests at once, refilled at ``per_second``."""

    burst: int = 50
    per_second: float = 16.0


@dataclass
class FaultRates:
    """Probabilities per request (one seeded RNG draws them in a fixed order: latency, error,
    conflict, lost). ``methods`` empty means every method."""

    seed: int = 0
    error_rate: float = 0.0
    error_statuses: list[int] = field(default_factory=lambda: [500, 502, 503])
    lost_rate: float = 0.0
    latency_rate: float = 0.0
    latency_seconds: float = 0.0
    conflict_rate: float = 0.0
    conflict_under_load: bool = True  # 409 only while the bucket is below half full
    apply_to_oauth: bool = False
    methods: list[str] = field(default_factory=list)


@dataclass
class ManagementApp:
    """The machine-to-machine application that holds a grant on the Management API."""

    client_id: str = "emulator-management-app"
    client_secret: str = "emulator-management-secret"
    name: str = "Emulator Management API client"
    scopes: list[str] = field(default_factory=lambda: list(ALL_SCOPES))


@dataclass
class EmulatorConfig:
    domain: str | None = None  # None: "host:port" of the listener
    custom_domains: list[str] = field(default_factory=list)
    management: ManagementApp = field(default_factory=ManagementApp)
    management_token_expires_in: int = 86400
    token_expires_in: int = 86400
    pool_cap: int = 4
    slot_cap: int = 2
    mtls_slot_cap: int | None = 2  # UNCONFIRMED for the mTLS slots; None: unbounded
    jti_replay_rejected: bool = True
    wrong_secret_error: str = "invalid_client"  # or "access_denied" (401 "Unauthorized")
    accept_token_endpoint_aud: bool = False  # also accept aud=https://{domain}/oauth/token
    secret_propagation_seconds: float = 0.0
    rotate_secret_pkjwt_status: int = 400  # UNCONFIRMED
    management_rate: RateLimit | None = field(default_factory=RateLimit)
    oauth_rate: RateLimit | None = None
    retry_after: bool = False
    faults: FaultRates = field(default_factory=FaultRates)
    cname_api_key: str | None = None
    par_expires_in: int = 30
    clients: list[dict[str, Any]] = field(default_factory=list)
    grants: list[dict[str, Any]] = field(default_factory=list)
    generate_clients: dict[str, Any] | None = None  # {"count": N, "name_prefix": "app-"}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EmulatorConfig:
        config: EmulatorConfig = _build(cls, data or {}, "config")
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply run-time switches in place; a nested object (``faults``, a rate limit) is
        merged key by key. The seeds are refused: they act only at start."""
        seeds = {"management", "clients", "grants", "generate_clients"} & set(changes)
        if seeds:
            raise ValueError(f"config: {sorted(seeds)} can only be set at start")
        merged = self.to_dict()
        for key, value in changes.items():
            nested = key in _NESTED and isinstance(value, dict) and merged.get(key) is not None
            merged[key] = merged[key] | value if nested else value  # nested objects merge
        fresh = EmulatorConfig.from_dict(merged)
        for item in dataclasses.fields(self):
            setattr(self, item.name, getattr(fresh, item.name))


_NESTED: dict[str, type] = {
    "management": ManagementApp,
    "management_rate": RateLimit,
    "oauth_rate": RateLimit,
    "faults": FaultRates,
}


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    known = {item.name for item in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        nested = _NESTED.get(key) if cls is EmulatorConfig else None
        if nested is not None and value is not None and not dataclasses.is_dataclass(value):
            value = _build(nested, value, f"{where}.{key}")
        values[key] = value
    return cls(**values)
