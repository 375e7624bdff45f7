"""Binding an application to its client at a provider (``app register --provider P``).

At a provider that reads one client by id (Auth0, ``ClientLookup``), each client is read once
before anything is written (``require_clients``): a client id with a typo is refused then, not
found at the first rotation. A provider that cannot be asked refuses the registration too
(nothing is bound to a client nobody has seen; run it again once the provider answers). At an
RFC 7592 provider the client is read with its registration access token (``bind_client``, for
``--client-id ID --registration-token-file F``, or ``--create``).

Every rule of ``app register`` is checked before the provider is asked anything, so a refused
name or label changes nothing anywhere. Then:

* adopting: the provider checks the token reads the client, the token is kept (never printed,
  never in the log), the application is recorded bound to the client. On an application already
  bound to that client (``exist_ok``), only the token is replaced: how management access is
  given back after a token was lost.
* creating: the provider registers a new client named after the application and keeps its
  token; the client id it assigned is recorded in ``application.registered``. A crash between
  the creation and the record is repeated without a second client (``ClientRegistrar.create``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from orchestrator.app.ports import ClientLookup, ClientRegistrar, Provider
from orchestrator.app.service import Service, bound_elsewhere
from orchestrator.domain import rules
from orchestrator.domain.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    ProviderError,
    RefusedError,
)

__all__ = ["bind_client", "require_clients"]


def require_clients(found: Provider, provider: str, client_ids: Iterable[str]) -> None:
    """Refused, in one line, unless ``found`` (the provider named ``provider``) has each of
    ``client_ids``: one read of each where the provider reads one client by id; nothing to
    check elsewhere (an RFC 7592 client is read with its token when it is handed over)."""
    if not isinstance(found, ClientLookup):
        return
    for client_id in client_ids:
        try:
            client = found.find_client(client_id)
        except ProviderError as exc:
            raise ProviderError(
                f"--provider {provider}: cannot check that client {client_id!r} exists there "
                f"({exc}); nothing was registered: run the command again once the identity "
                "provider answers") from None
        if client is None:
            raise NotFoundError(
                f"--provider {provider}: identity provider {provider!r} has no client "
                f"{client_id!r}; nothing was registered: check the client id (--client-id, "
                "else the application's name)")


def bind_client(service: Service, registrar: ClientRegistrar, app: str,
                labels: Mapping[str, str], provider: str, *, client_id: str | None = None,
                registration_token: str | None = None, create: bool = False,
                exist_ok: bool = False) -> bool:
    """Register ``app`` bound to a client of ``provider``; False when it was registered
    already (``exist_ok``: then only a given token is kept)."""
    if create == (registration_token is not None) or (create and client_id is not None):
        raise InputError("give either a client id with its registration access token, or "
                         "create a client")
    state = service.load(app)
    if state.registered:
        if not exist_ok:
            rules.decide(rules.RegisterApplication(app=app, at=service.clock()), state)
        if state.provider != provider or (client_id is not None
                                          and client_id != state.provider_client_id):
            bound_to = state.provider or "the local provider"
            raise RefusedError(
                f"application {app!r} is bound to client {state.provider_client_id!r} of "
                f"{bound_to}, not to {client_id or 'a new client'!r} of {provider}")
        if registration_token is not None:
            registrar.adopt(state.provider_client_id, registration_token)
        return False
    rules.decide(rules.RegisterApplication(app=app, at=service.clock(), labels=dict(labels),
                                           provider=provider, client_id=client_id), state)
    owner = service.clients_bound(provider).get(client_id or app) if not create else None
    if owner is not None:  # before its registration access token is replaced
        raise ConflictError(bound_elsewhere(provider, client_id or app, owner))
    if create:
        client_id = registrar.create(app)
    else:
        assert registration_token is not None
        registrar.adopt(client_id or app, registration_token)
    service.register_app(app, dict(labels), provider, client_id)
    if create:
        registrar.created(app)
    return True
