"""Any OpenID provider with dynamic client registration and management (RFC 7591/7592).

One module per reason to change:

* ``http``: HTTPS to the provider; every transport failure becomes ``ProviderUnavailable``;
* ``discovery``: the endpoints, from the provider's discovery document (cached);
* ``registration``: a client's whole record read, modified and written with its registration
  access token, and how that rotating token is kept (its docstring states the guarantee);
* ``record``: what the record holds for each credential, and the changes that attach and detach
  one (pure);
* ``token_test``: the test of a new credential, a real request at the token or PAR endpoint;
* ``provider``: ``OidcProvider``, the ports (``Provider``, ``Inventory``, ``ClientRegistrar``).
"""

from __future__ import annotations

from orchestrator.adapters.providers.oidc.provider import OIDC_USAGES, OidcProvider
from orchestrator.adapters.providers.oidc.registration import TokenRefused

__all__ = ["OIDC_USAGES", "OidcProvider", "TokenRefused"]
