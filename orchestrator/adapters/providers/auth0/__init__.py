"""The Auth0 provider: one tenant's Management API v2 and authentication API, over httpx.

* ``provider``: ``Auth0Provider``, the ``Provider`` and ``Inventory`` ports;
* ``mapping``: Auth0's JSON and our values (credential types, slots, create bodies, how our
  credential is found in a client's pool, the slot PATCH);
* ``token_endpoint``: the test of a new credential (``/oauth/token``, ``/oauth/par``);
* ``client``: the HTTP session (Management API token, one paced request, failures mapped);
* ``pacer``: the tenant's token bucket, one per process;
* ``retries``: a few attempts of a whole operation, with backoff and jitter.
"""

from orchestrator.adapters.providers.auth0.pacer import Pacer, RateLimit, tenant_pacer
from orchestrator.adapters.providers.auth0.provider import Auth0Provider
from orchestrator.adapters.providers.auth0.retries import RetryPolicy

__all__ = ["Auth0Provider", "Pacer", "RateLimit", "RetryPolicy", "tenant_pacer"]
