"""Whether a client secret can authenticate an application's client, before a secret rotation
starts.

At a provider whose client authenticates one way at a time (``Capabilities.secret_beside_keys``
False: Auth0), a client that authenticates with keys or certificates (Private Key JWT, mTLS)
takes no client secret: Auth0 refuses ``rotate-secret`` on such a client, and a secret set on
it is never used, so the rotation's test fails and it parks, late, with a secret written for
nothing. It is refused before it starts instead, on the cheapest honest signal:

* the log: the application holds a usable credential of a token endpoint method
  (``drift.auth_method_of``). No request. The daemon's drift check keeps this honest: an
  application whose client changed behind the log's back is held, not rotated.
* the provider's own record of the client (``RemoteClient.auth_method``), where it reads one
  client in one request (``secret rotate`` asks it once, when the log says nothing).
"""

from __future__ import annotations

from datetime import datetime

from events.state import AppState
from orchestrator.domain.drift import AuthMethod, auth_method_of
from orchestrator.domain.identity_provider import Capabilities

__all__ = ["KEY_METHODS", "secret_refused"]

KEY_METHODS = frozenset(m.value for m in AuthMethod)  # token endpoint methods of keys and certs


def secret_refused(state: AppState, capabilities: Capabilities, at: datetime,
                   remote_method: str | None = None) -> str | None:
    """Why a client-secret rotation of ``state``'s application must not start (None: it may),
    from the log and, when given, the method the provider says the client uses."""
    if capabilities.secret_beside_keys:
        return None
    methods = sorted({m for c in state.credentials.values()
                      if c.usable(at) and (m := auth_method_of(c)) is not None})
    if methods:
        said = f"authenticates with {'/'.join(methods)} (the log holds its usable keys)"
    elif remote_method in KEY_METHODS:
        said = f"authenticates with {remote_method} (so the identity provider says)"
    else:
        return None
    return (f"application {state.app!r}: its client {state.provider_client_id!r} at identity "
            f"provider {state.provider!r} {said}: it takes no client secret (one set there is never "
            "used), so no secret rotation is started; rotate its keys instead, or switch the "
            "client to a client secret first")
