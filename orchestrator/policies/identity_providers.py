"""IdentityProvider resources: the identity providers applications belong to, beside the policies.

Same folder, same loader, same style as ``RotationPolicy`` (``orchestrator.policies.models``):
frozen pydantic models, camelCase keys, unknown keys refused, every error one line naming file
and field. ``spec`` holds exactly one of ``auth0`` (a tenant, through its Management API) or
``oidc`` (an OpenID provider with dynamic client registration and management, RFC 7591/7592)::

    apiVersion: orchestrator/v1
    kind: IdentityProvider
    metadata: {name: auth0-prod}
    spec:
      auth0:
        domain: example.eu.auth0.com
        clientId: AbC123
        clientSecret: {env: AUTH0_MGMT_SECRET}

The name ``local`` is the embedded provider's and cannot be taken. Secrets are references
(``orchestrator.policies.secret_refs``), resolved when the provider is built; paths (a secret
file, ``caFile``) are relative to the resource file's folder.

Both kinds hold one client secret: setting a new one ends the old one at once (Auth0's custom
secret or ``rotate-secret``, as ``secretRotation`` says; RFC 7592 cannot even rotate it), so a
client-secret rotation has a gap however short its overlap (``ProviderSpec.secret_overlap``;
the loader refuses a client_secret policy beside such a provider unless it says
``acceptSecretGap``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestrator.domain.identity_provider import LOCAL_PROVIDER, SecretRotation
from orchestrator.policies.models import Metadata, refuse
from orchestrator.policies.secret_refs import SecretRef, relative_to_resource

__all__ = [
    "DEFAULT_MAX_CREDENTIALS",
    "LOOPBACK_HOSTS",
    "Auth0Spec",
    "IdentityProvider",
    "OidcSpec",
    "ProviderSpec",
    "RateLimit",
]

DEFAULT_MAX_CREDENTIALS = 4  # Auth0's documented pool of credential records per client
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})  # http is allowed only here
_MODEL = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                   field_title_generator=lambda name, info: info.alias or name)
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_DOMAIN = re.compile(r"(?P<host>[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")


def _url(value: str, what: str, example: str) -> str:
    """An absolute https URL (http only to a loopback host: a local emulator or proxy), with
    no query, fragment or credentials in it."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError:
        raise ValueError(f"{value!r} is not a URL; write e.g. {example}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r} is not an absolute https URL; write e.g. {example}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"{value!r} is plain http to another machine, which would send "
                         f"{what} in clear; use https (http is allowed only to 127.0.0.1, "
                         "::1 or localhost)")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"a URL with a user or password in it is refused; write {what} "
                         "as the resource's reference instead")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r} has a query or fragment; remove it")
    return value


class RateLimit(BaseModel):
    """A token bucket every call to the tenant passes through: ``perSecond`` on average, at
    most ``burst`` at once (default: ``perSecond`` rounded up)."""

    model_config = _MODEL
    per_second: float = Field(alias="perSecond", gt=0, le=10_000)
    burst: int | None = Field(None, ge=1, le=100_000)

    @property
    def bucket(self) -> int:
        return self.burst if self.burst is not None else max(1, math.ceil(self.per_second))


class Auth0Spec(BaseModel):
    model_config = _MODEL
    domain: str
    base_url: str | None = Field(None, alias="baseUrl")  # a proxy or a local emulator
    client_id: str = Field(alias="clientId", min_length=1, max_length=128)
    client_secret: SecretRef = Field(alias="clientSecret")
    rate_limit: RateLimit | None = Field(None, alias="rateLimit")
    max_credentials: int = Field(DEFAULT_MAX_CREDENTIALS, alias="maxCredentials", le=1000)
    mtls_edge: StrictBool = Field(False, alias="mtlsEdge")
    # patch (a custom secret the orchestrator made) | rotate-secret (Auth0 makes it)
    secret_rotation: SecretRotation = Field(SecretRotation.PATCH, alias="secretRotation")

    @field_validator("domain")
    @classmethod
    def _domain(cls, domain: str) -> str:
        """The tenant's host name (a local emulator's may be an address with a port)."""
        if "://" in domain or "/" in domain or "@" in domain:
            raise ValueError(f"{domain!r} is not a host name; write the tenant's domain alone "
                             "(e.g. example.eu.auth0.com) and any other address in baseUrl")
        found = _DOMAIN.fullmatch(domain.lower())
        port = int(found["port"]) if found and found["port"] else None
        host = found["host"] if found else ""
        labels = host.split(".")
        if (found is None or len(host) > 253 or (port is not None and not 0 < port < 65536)
                or (not host.startswith("[") and not all(map(_HOST_LABEL.fullmatch, labels)))):
            raise ValueError(f"{domain!r} is not a host name; write the tenant's domain, e.g. "
                             "example.eu.auth0.com (letters, digits, '-' and dots)")
        return domain.lower()

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        return _url(url, "the Management API token", "https://example.eu.auth0.com").rstrip("/")

    @field_validator("max_credentials")
    @classmethod
    def _pool(cls, cap: int) -> int:
        if cap < 2:
            raise ValueError(f"{cap} leaves no room for a new credential beside the one in use, "
                             "so every rotation would cut the application off; give at least 2 "
                             f"(Auth0's default entitlement is {DEFAULT_MAX_CREDENTIALS})")
        return cap

    @property
    def url(self) -> str:
        """Where the Management API and the token endpoint are reached."""
        return self.base_url or f"https://{self.domain}"


class OidcSpec(BaseModel):
    model_config = _MODEL
    issuer: str  # exactly as the provider spells it: discovery must return the same text
    initial_access_token: SecretRef | None = Field(None, alias="initialAccessToken")
    ca_file: Path | None = Field(None, alias="caFile")

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, issuer: str) -> str:
        return _url(issuer, "client credentials", "https://idp.example.com")

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        return None if path is None else relative_to_resource(path, info)

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


class ProviderSpec(BaseModel):
    model_config = _MODEL
    auth0: Auth0Spec | None = None
    oidc: OidcSpec | None = None

    @model_validator(mode="after")
    def _one(self) -> ProviderSpec:
        given = [k for k in ("auth0", "oidc") if getattr(self, k) is not None]
        if len(given) != 1:
            what = "both auth0 and oidc" if given else "neither auth0 nor oidc"
            raise refuse("", f"{what} given; give exactly one: auth0 (a tenant) or oidc (an "
                             "OpenID provider with dynamic client registration)")
        return self

    @property
    def type(self) -> Literal["auth0", "oidc"]:
        return "auth0" if self.auth0 is not None else "oidc"

    @property
    def secret_overlap(self) -> bool:
        """Whether a new client secret can be set while the old one keeps working. Neither
        kind can: Auth0 and RFC 7592 hold one secret per client."""
        return False


class IdentityProvider(BaseModel):
    model_config = _MODEL
    api_version: Literal["orchestrator/v1"] = Field(alias="apiVersion")
    kind: Literal["IdentityProvider"]
    metadata: Metadata
    spec: ProviderSpec

    @model_validator(mode="after")
    def _not_local(self) -> IdentityProvider:
        if self.metadata.name == LOCAL_PROVIDER:
            raise refuse("metadata.name", f"'{LOCAL_PROVIDER}' is the embedded provider's name "
                                          "(applications registered without --provider); "
                                          "choose another name")
        return self

    @property
    def name(self) -> str:
        return self.metadata.name

