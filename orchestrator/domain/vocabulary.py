"""The one vocabulary of credentials and rotations: usages, algorithms, key sizes, step names.

Every other module imports these names; none spells a usage, an algorithm or a step as a bare
string. ``CredentialUsage`` is the log's own (``events.catalog.Usage``: a credential is for
``private_key_jwt``, ``jar`` or ``mtls``); a rotation may also rotate the ``client_secret``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

from events.kinds import Usage as CredentialUsage

__all__ = [
    "DEFAULT_ALGORITHM",
    "DEFAULT_KEY_SIZE",
    "KEY_SIZES",
    "MAX_APP_NAME",
    "MAX_RSA_BITS",
    "MIN_RSA_BITS",
    "SECRET_USAGE",
    "SIGNING_USAGES",
    "Algorithm",
    "CredentialUsage",
    "KeySize",
    "Step",
    "Usage",
]


class Usage(StrEnum):
    """What a policy or a rotation is for: a credential usage, or the client secret."""

    PRIVATE_KEY_JWT = CredentialUsage.PRIVATE_KEY_JWT.value
    JAR = CredentialUsage.JAR.value
    MTLS = CredentialUsage.MTLS.value
    CLIENT_SECRET = "client_secret"


SECRET_USAGE = Usage.CLIENT_SECRET
SIGNING_USAGES = (Usage.PRIVATE_KEY_JWT, Usage.JAR)  # RSA public keys with a JWS algorithm


class Algorithm(StrEnum):
    """The JWS algorithms the identity provider accepts for application keys."""

    RS256 = "RS256"
    RS384 = "RS384"
    PS256 = "PS256"


DEFAULT_ALGORITHM = Algorithm.RS256
KeySize = Literal[2048, 3072, 4096]  # what a policy may generate
KEY_SIZES: tuple[int, ...] = get_args(KeySize)
DEFAULT_KEY_SIZE = 2048
MIN_RSA_BITS, MAX_RSA_BITS = 2048, 4096  # what an uploaded key may have
MAX_APP_NAME = 64  # an application's name is its client id: iss and sub of its assertions


class Step(StrEnum):
    """The steps of a rotation, in order (``orchestrator.domain.rotation``)."""

    FREE_SLOT = "free_slot"
    GENERATE = "generate"
    REGISTER = "register"
    CONFIRM = "confirm"  # a CA-issued certificate whose subject DN the provider already matches
    ACTIVATE = "activate"
    TEST = "test"
    DELIVER = "deliver"
    WAIT = "wait"
    DISABLE_OLD = "disable_old"
    COMPLETE = "complete"
