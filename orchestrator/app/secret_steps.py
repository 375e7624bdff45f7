"""The client secret's rotation steps, carried out (the rotator calls them; their order is
``orchestrator.domain.rotation.resume``'s). One path for the daemon and ``secret rotate``::

    generate  a new secret, stored once as keystore item ``secret/<app>/v<N+1>``   "generated"
    register  the identity provider takes it as the current secret; the previous one, which
              the app holds, stays valid without limit until the new one is delivered (a
              failed test or delivery, a parked rotation, a daemon down for days never lock
              the app out); a provider that makes its own secret instead (Auth0's
              ``rotate-secret``) answers with it, and it replaces the keystore item at once
                                                                               "registered"
    test      the provider accepts the new secret, as version N+1                  "tested"
    deliver   the app's files are replaced, then the previous secret's grace is set from now
              (the app has the new one from now), and only then ``secret.rotated`` is
              recorded: the log names a secret that is registered, tested and delivered.
                                                                                "delivered"

Until ``secret.rotated`` the log's current secret is version N, which the provider still
accepts: a rotation that fails or parks at any step leaves the log and the provider agreeing on
a secret the application holds (the old credential is retired only after its successor was
tested and delivered, as a key is). An earlier order, the grace limited to the overlap plus
the retry budget from registration and set from delivery before the files were written, let a
rotation parked at its delivery lock the app out an overlap later, with nothing left due to
retry it (tests/explore found it). Every step is idempotent: a repeat finds the keystore item (the
first process to store it wins, ``put_new``), re-registers the same secret, and records nothing
twice. Where the provider makes the secret, a repeat finds it holds the keystore's (nothing
sent), or makes another after a lost answer, which replaces the item in turn; one made at
delivery (the provider's secret changed since its test) fails the step, and its retry delivers
the new one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from events import catalog as ev
from events.codec import format_time
from events.state import AppState, Rotation
from orchestrator.app.delivering import SECRET_FILE, Deliverer
from orchestrator.app.key_work import METADATA_FILE
from orchestrator.app.ports import Crypto, Keystore, Provider
from orchestrator.app.service import secret_item_id
from orchestrator.domain.errors import OrchestratorError
from orchestrator.domain.identity_provider import Proof
from orchestrator.domain.rotation import Params, Recorded, Step
from orchestrator.domain.rotation_events import decide_secret_delivered
from orchestrator.domain.timemath import END_OF_TIME
from orchestrator.domain.vocabulary import SECRET_USAGE

__all__ = ["SECRET_FILE", "SECRET_STEPS", "VERSION_FILE", "SecretSteps", "next_secret_version"]

SECRET_STEPS = (Step.GENERATE, Step.REGISTER, Step.TEST, Step.DELIVER)
VERSION_FILE = "version"

# (app, rotation id, decide(state) -> events): records a step's events
Record = Callable[[str, str, Callable[[AppState], list[ev.Event]]], None]
# (app, rotation id, the step's recorded name, detail): records a step once
StepEvent = Callable[[str, str, Recorded, str | None], None]


def next_secret_version(state: AppState) -> int:
    """The version a rotation in flight brings: the log's current one + 1 (``secret.rotated``
    is recorded only when the new secret is delivered)."""
    return (state.secret.version if state.secret else 0) + 1


class SecretSteps:
    def __init__(self, provider: Provider, keystore: Keystore, crypto: Crypto,
                 deliverer: Deliverer, record: Record, step_event: StepEvent) -> None:
        self.provider = provider
        self.keystore = keystore
        self.crypto = crypto
        self.deliverer = deliverer
        self.record = record
        self._step = step_event

    def do(self, step: Step, state: AppState, rotation: Rotation, params: Params,
           at: datetime) -> None:
        app, version = state.app, next_secret_version(state)
        match step:
            case Step.GENERATE:
                self.keystore.put_new(secret_item_id(app, version),
                                      self.crypto.new_secret().encode())
                self._step(app, rotation.id, Recorded.GENERATED, f"client secret v{version}")
            case Step.REGISTER:
                until = END_OF_TIME if state.secret is not None else None
                self._set(app, version, self.secret(app, version), until)
                self._step(app, rotation.id, Recorded.REGISTERED, _detail(version, until))
            case Step.TEST:
                accepted = self.provider.authenticate(app, Proof(
                    client_id=state.provider_client_id, usage=SECRET_USAGE,
                    secret=self.secret(app, version), secret_version=version), at)
                if accepted is not None and accepted != str(version):
                    raise OrchestratorError(f"provider accepted client secret v{accepted}, not "
                                            f"the new v{version}")
                self._step(app, rotation.id, Recorded.TESTED, f"client secret v{version}")
            case Step.DELIVER:
                self._deliver(state, rotation, params, at, version)
            case _:
                raise AssertionError(f"not a client secret step: {step}")

    def secret(self, app: str, version: int) -> str:
        stored = self.keystore.get(secret_item_id(app, version))
        if stored is None:
            raise OrchestratorError(f"keystore has no client secret v{version} for {app!r}")
        return stored.decode()

    def _set(self, app: str, version: int, secret: str, until: datetime | None) -> str:
        """Has the provider take ``secret``; the secret the app has there now. A provider that
        makes its own (Auth0's ``rotate-secret``) answers with the only copy: it replaces the
        keystore item at once, before anything else is done."""
        made = self.provider.set_secret(app, version, secret, until)
        if made is None or made == secret:
            return secret
        self.keystore.put(secret_item_id(app, version), made.encode())
        return made

    def _deliver(self, state: AppState, rotation: Rotation, params: Params, at: datetime,
                 version: int) -> None:
        app = state.app
        secret = self.secret(app, version)
        grace = params.overlap
        # what rules.RotateSecret records below, at the same instant
        until = at + grace if state.secret is not None and grace else None
        if self.deliverer.delivery is not None:  # the simulator delivers to nobody
            metadata = {**self.provider.metadata(app), "usage": str(SECRET_USAGE),
                        "version": version}
            self.deliverer.deliver(app, SECRET_USAGE, {
                SECRET_FILE: secret.encode(), VERSION_FILE: str(version).encode(),
                METADATA_FILE: (json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode()},
                params.hook, rotation_id=rotation.id)
        # only now that the app has the new secret does the previous one's grace start
        if self._set(app, version, secret, until) != secret:  # idempotent: the same secret
            raise OrchestratorError(
                f"{app}: the provider no longer held client secret v{version} when it was "
                "delivered (changed there since its test?) and made another, kept instead; "
                "the next attempt delivers that one")
        fingerprint = self.crypto.secret_fingerprint(secret)
        detail = _detail(version, until)
        self.record(app, rotation.id, lambda s: decide_secret_delivered(
            s, rotation.id, version, fingerprint, at, grace, detail))


def _detail(version: int, previous_until: datetime | None) -> str:
    if previous_until is None:
        return f"client secret v{version}"
    if previous_until == END_OF_TIME:
        return f"client secret v{version}; previous secret valid until it is delivered"
    return f"client secret v{version}; previous secret valid until {format_time(previous_until)}"
