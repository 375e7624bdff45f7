"""Where an OpenID provider's registration access tokens are kept: one keystore item per
client, whose id must fit the keystore (``MAX_ITEM_ID_BYTES``) for every provider name and
client id the resource and registration rules allow, while the items written before keep
their ids (a token kept by an earlier version is found again)."""

from __future__ import annotations

import json
import time

from orchestrator.adapters.keystore import MemoryKeystore
from orchestrator.adapters.providers.oidc.discovery import Discovery
from orchestrator.adapters.providers.oidc.http import Http
from orchestrator.adapters.providers.oidc.registration import Registrations
from orchestrator.app.ports import MAX_ITEM_ID_BYTES

LONGEST_PROVIDER = "p" * 63  # metadata.name: 1-63 characters
LONGEST_CLIENT = "~" * 64  # a client id: 1-64 printable characters


def registrations(provider: str, keystore: MemoryKeystore) -> Registrations:
    http = Http(provider)
    return Registrations(provider, http, Discovery(http, "https://idp.example", time.time),
                         keystore)


def test_a_short_client_id_keeps_the_item_id_tokens_were_always_kept_under() -> None:
    keystore = MemoryKeystore()
    kept = registrations("idp-staging", keystore)
    assert kept.token_item("AbC123") == "idp/idp-staging/AbC123/registration-token"
    keystore.put("idp/idp-staging/AbC123/registration-token",  # as written before: no id in it
                 json.dumps({"token": "t", "uri": "https://idp.example/reg/AbC123"}).encode())
    assert kept.has_token("AbC123")
    assert kept.client_ids() == ["AbC123"]


def test_every_allowed_provider_and_client_id_fits_and_is_listed_again() -> None:
    keystore = MemoryKeystore()
    kept = registrations(LONGEST_PROVIDER, keystore)
    longest = kept.token_item(LONGEST_CLIENT)
    fitting = "c" * (MAX_ITEM_ID_BYTES - len(f"idp/{LONGEST_PROVIDER}//registration-token"))
    assert len(longest.encode()) <= MAX_ITEM_ID_BYTES
    assert LONGEST_CLIENT not in longest
    assert longest == kept.token_item(LONGEST_CLIENT)  # deterministic
    assert kept.token_item(LONGEST_CLIENT[:-1] + "!") != longest
    assert kept.token_item(fitting) == f"idp/{LONGEST_PROVIDER}/{fitting}/registration-token"
    assert kept.token_item(fitting + "c") != f"idp/{LONGEST_PROVIDER}/{fitting}c/registration-token"
    for client_id, token in ((LONGEST_CLIENT, "t1"), (fitting, "t2"), (fitting + "c", "t3")):
        kept.keep(client_id, token, f"https://idp.example/reg/{client_id}")
    assert kept.client_ids() == sorted([LONGEST_CLIENT, fitting, fitting + "c"])
    assert all(kept.has_token(c) for c in (LONGEST_CLIENT, fitting, fitting + "c"))
    assert len(keystore.ids()) == 3
