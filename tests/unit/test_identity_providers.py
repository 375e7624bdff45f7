"""IdentityProvider resources: read beside the policies by the same loader, refused in the same
style (one line naming file and field), their secrets kept by reference and resolved only when
the provider is built; and the policy fields a provider's limits call for (acceptSecretGap,
acceptUntested).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from events.store import InMemoryEventStore, ReadFilter
from orchestrator.adapters.keystore import MemoryKeystore
from orchestrator.bootstrap import BuiltProviders, build_identity_provider
from orchestrator.domain.errors import InputError, PolicyError
from orchestrator.domain.identity_provider import SecretRotation
from orchestrator.policies.files import (
    LoadedIdentityProvider,
    load_policies,
    load_policy_file,
    load_resource_file,
)
from orchestrator.policies.identity_providers import IdentityProvider
from orchestrator.policies.secret_refs import INLINE, SecretRef
from orchestrator.policies.source import PolicySource, to_plan_policy
from tests.conftest import NOW
from tests.helpers import certificate, rsa_key, variant
from tests.helpers import write_yaml as write

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples" / "identity-providers"
SECRET = "s3cr3t-Value-never-shown"

AUTH0: dict[str, Any] = {
    "apiVersion": "orchestrator/v1",
    "kind": "IdentityProvider",
    "metadata": {"name": "auth0-prod"},
    "spec": {"auth0": {"domain": "example.eu.auth0.com", "clientId": "AbC123",
                       "clientSecret": {"env": "AUTH0_MGMT_SECRET"}}},
}
OIDC: dict[str, Any] = {
    "apiVersion": "orchestrator/v1",
    "kind": "IdentityProvider",
    "metadata": {"name": "idp-staging"},
    "spec": {"oidc": {"issuer": "https://idp.example.com"}},
}
SECRET_POLICY: dict[str, Any] = {
    "apiVersion": "orchestrator/v1",
    "kind": "RotationPolicy",
    "metadata": {"name": "internal-secrets"},
    "spec": {"selector": {"apps": ["internal-*"]}, "credential": {"usage": "client_secret"},
             "rotation": {"every": "30d", "beforeExpiry": "7d", "overlap": "1h"}},
}
KEY_POLICY: dict[str, Any] = {
    "apiVersion": "orchestrator/v1",
    "kind": "RotationPolicy",
    "metadata": {"name": "payments"},
    "spec": {"selector": {"apps": ["payments-*"]}, "credential": {"usage": "private_key_jwt"},
             "rotation": {"every": "90d", "beforeExpiry": "14d", "overlap": "24h"},
             "lifetime": "120d"},
}


def provider(path: Path) -> IdentityProvider:
    loaded = load_resource_file(path)
    assert isinstance(loaded, LoadedIdentityProvider)
    return loaded.resource


def refused_lines(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_resource_file(path)
    lines: list[str] = getattr(caught.value, "errors", [str(caught.value)])
    return lines


# -- the examples and what a resource holds -----------------------------------------------------


def test_the_example_resources_validate() -> None:
    result = load_policies([EXAMPLES])
    assert result.errors == ()
    assert result.policies == ()
    by_name = {p.resource.name: p.resource for p in result.identity_providers}
    assert sorted(by_name) == ["auth0-prod", "idp-staging"]
    auth0 = by_name["auth0-prod"].spec.auth0
    assert auth0 is not None
    assert (auth0.domain, auth0.client_id, auth0.client_secret.env) == (
        "example.eu.auth0.com", "AbC123", "AUTH0_MGMT_SECRET")
    assert auth0.rate_limit is not None
    assert (auth0.rate_limit.per_second, auth0.rate_limit.bucket) == (16, 50)
    assert (auth0.max_credentials, auth0.mtls_edge, auth0.url, auth0.secret_rotation) == (
        4, False, "https://example.eu.auth0.com", SecretRotation.PATCH)
    oidc = by_name["idp-staging"].spec.oidc
    assert oidc is not None
    assert oidc.discovery_url == "https://idp.example.com/.well-known/openid-configuration"
    assert oidc.initial_access_token == SecretRef(env="OIDC_IAT")


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    auth0 = provider(write(tmp_path, "a.yaml", AUTH0)).spec.auth0
    assert auth0 is not None
    assert (auth0.base_url, auth0.rate_limit, auth0.max_credentials, auth0.mtls_edge,
            auth0.secret_rotation) == (None, None, 4, False, SecretRotation.PATCH)
    made = provider(write(tmp_path, "c.yaml", variant(
        AUTH0, spec__auth0__secretRotation="rotate-secret"))).spec.auth0
    assert made is not None and made.secret_rotation is SecretRotation.ROTATE_SECRET
    limit = provider(write(tmp_path, "b.yaml", variant(
        AUTH0, spec__auth0__rateLimit={"perSecond": 2.5}))).spec.auth0
    assert limit is not None and limit.rate_limit is not None
    assert limit.rate_limit.bucket == 3  # burst defaults to perSecond rounded up


def test_a_local_emulator_may_be_reached_over_plain_http_on_loopback(tmp_path: Path) -> None:
    for url in ("http://127.0.0.1:8080/", "http://localhost:9000", "http://[::1]:8443"):
        spec = provider(write(tmp_path, "a.yaml", variant(
            AUTH0, spec__auth0__baseUrl=url))).spec.auth0
        assert spec is not None
        assert spec.url == url.rstrip("/")
    emulator = provider(write(tmp_path, "e.yaml", variant(  # an emulator's domain: host:port
        AUTH0, spec__auth0__domain="127.0.0.1:8080",
        spec__auth0__baseUrl="http://127.0.0.1:8080"))).spec.auth0
    assert emulator is not None and emulator.domain == "127.0.0.1:8080"


# -- refusals: one line each, naming file and field ---------------------------------------------


@pytest.mark.parametrize(("data", "field", "fragment"), [
    pytest.param(variant(AUTH0, spec__oidc={"issuer": "https://idp.example.com"}), "spec",
                 "both auth0 and oidc given; give exactly one", id="both auth0 and oidc"),
    pytest.param(variant(AUTH0, spec__auth0=None), "spec",
                 "neither auth0 nor oidc given", id="neither auth0 nor oidc"),
    pytest.param(variant(AUTH0, metadata__name="local"), "metadata.name",
                 "'local' is the embedded provider's name", id="the name local is reserved"),
    pytest.param(variant(AUTH0, spec__auth0__domian="x"), "spec.auth0.domian",
                 "unknown key 'domian' (allowed: domain, baseUrl, clientId, clientSecret, "
                 "rateLimit, maxCredentials, mtlsEdge, secretRotation)",
                 id="an unknown key names the allowed"),
    pytest.param(variant(AUTH0, spec__auth0__domain="https://example.eu.auth0.com"),
                 "spec.auth0.domain", "write the tenant's domain alone",
                 id="a URL where the domain goes"),
    pytest.param(variant(AUTH0, spec__auth0__domain="example..auth0.com"), "spec.auth0.domain",
                 "is not a host name", id="a domain that is not a host name"),
    pytest.param(variant(AUTH0, spec__auth0__baseUrl="http://auth0.example.com"),
                 "spec.auth0.baseUrl", "plain http to another machine",
                 id="plain http to a remote host"),
    pytest.param(variant(AUTH0, spec__auth0__baseUrl="https://user:pw@auth0.example.com"),
                 "spec.auth0.baseUrl", "a URL with a user or password in it is refused",
                 id="credentials in a URL"),
    pytest.param(variant(AUTH0, spec__auth0__maxCredentials=1), "spec.auth0.maxCredentials",
                 "leaves no room for a new credential", id="a pool that cannot rotate"),
    pytest.param(variant(AUTH0, spec__auth0__rateLimit={"perSecond": 0}),
                 "spec.auth0.rateLimit.perSecond", "0 is too small; use more than 0",
                 id="a rate of zero"),
    pytest.param(variant(AUTH0, spec__auth0__mtlsEdge="yes"), "spec.auth0.mtlsEdge",
                 "expected true or false", id="a flag that is not a boolean"),
    pytest.param(variant(AUTH0, spec__auth0__secretRotation="rotate"),
                 "spec.auth0.secretRotation", "'rotate' is not allowed; use 'patch' or "
                 "'rotate-secret'", id="a secret rotation Auth0 does not offer"),
    pytest.param(variant(AUTH0, spec__auth0__clientId=""), "spec.auth0.clientId",
                 "is empty; write a value", id="an empty client id"),
    pytest.param(variant(AUTH0, spec__auth0__clientSecret={"env": "A", "file": "/x"}),
                 "spec.auth0.clientSecret", "give exactly one of env", id="env and file"),
    pytest.param(variant(AUTH0, spec__auth0__clientSecret={}), "spec.auth0.clientSecret",
                 "give exactly one of env", id="neither env nor file"),
    pytest.param(variant(AUTH0, spec__auth0__clientSecret={"env": "1-bad"}),
                 "spec.auth0.clientSecret.env", "the env name is not a valid variable name",
                 id="an environment variable name that cannot be one"),
    pytest.param(variant(OIDC, spec__oidc__issuer="https://idp.example.com/?tenant=a"),
                 "spec.oidc.issuer", "has a query or fragment", id="an issuer with a query"),
    pytest.param(variant(OIDC, spec__oidc__issuer="idp.example.com"),
                 "spec.oidc.issuer", "is not an absolute https URL", id="an issuer without scheme"),
    pytest.param(variant(OIDC, spec__oidc__caFile="missing-ca.pem"), "spec.oidc.caFile",
                 "cannot read", id="a CA file that is not there"),
])
def test_a_resource_that_cannot_be_used_is_refused_naming_file_and_field(
        tmp_path: Path, data: dict[str, Any], field: str, fragment: str) -> None:
    path = write(tmp_path, "idp.yaml", data)
    lines = refused_lines(path)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: {field}: "), lines
    assert fragment in lines[0], lines


@pytest.mark.parametrize("inline", [SECRET, 12345678, [SECRET]], ids=["text", "number", "list"])
def test_an_inline_secret_is_refused_in_one_line_that_does_not_repeat_it(
        tmp_path: Path, inline: object) -> None:
    path = write(tmp_path, "idp.yaml", variant(AUTH0, spec__auth0__clientSecret=inline))
    [line] = refused_lines(path)
    assert line.startswith(f"{path}: spec.auth0.clientSecret: an inline secret is refused"), line
    assert "{env: NAME}" in line and "{file: PATH}" in line
    assert SECRET not in line and "12345678" not in line


def test_an_inline_initial_access_token_is_refused_too(tmp_path: Path) -> None:
    path = write(tmp_path, "idp.yaml", variant(OIDC, spec__oidc__initialAccessToken=SECRET))
    [line] = refused_lines(path)
    assert line.startswith(f"{path}: spec.oidc.initialAccessToken: an inline secret"), line
    assert SECRET not in line


def test_a_ca_file_is_read_from_the_resource_folder_and_must_hold_certificates(
        tmp_path: Path) -> None:
    key = rsa_key()
    (tmp_path / "ca.pem").write_bytes(certificate(
        key, "CN=IdP CA", not_before=NOW, not_after=NOW + timedelta(days=1), ca=True))
    oidc = provider(write(tmp_path, "idp.yaml", variant(OIDC, spec__oidc__caFile="ca.pem"))
                    ).spec.oidc
    assert oidc is not None and oidc.ca_file == tmp_path / "ca.pem"
    (tmp_path / "not-ca.pem").write_text("hello\n")
    path = write(tmp_path, "bad.yaml", variant(OIDC, spec__oidc__caFile="not-ca.pem"))
    assert refused_lines(path) == [f"{path}: spec.oidc.caFile: {tmp_path / 'not-ca.pem'} holds "
                                   "no PEM certificate; give the CA bundle that signed the "
                                   "provider's TLS certificate"]


def test_a_resource_without_kind_is_refused_naming_the_kinds(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yaml", variant(AUTH0, kind=None))
    assert refused_lines(path) == [
        f"{path}: kind: required key missing; add it (RotationPolicy, IdentityProvider "
        "or Notifier)"]


def test_a_provider_file_is_not_a_policy_file(tmp_path: Path) -> None:
    path = write(tmp_path, "idp.yaml", AUTH0)
    with pytest.raises(PolicyError, match="an IdentityProvider, not a RotationPolicy"):
        load_policy_file(path)


def test_two_providers_with_one_name_are_both_refused_naming_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", AUTH0)
    second = write(tmp_path, "b.yaml", variant(OIDC, metadata__name="auth0-prod"))
    write(tmp_path, "c.yaml", OIDC)
    result = load_policies([tmp_path])
    assert [p.resource.name for p in result.identity_providers] == ["idp-staging"]
    assert [str(e) for e in result.errors] == [
        f"{first}: metadata.name: 'auth0-prod' is also the name of the identity provider in "
        f"{second}; give each identity provider a unique name"]


def test_a_mixed_folder_loads_policies_and_providers_and_a_broken_file_alone_is_refused(
        tmp_path: Path) -> None:
    write(tmp_path, "a-policy.yaml", KEY_POLICY)
    write(tmp_path, "b-auth0.yaml", AUTH0)
    write(tmp_path, "c-oidc.yml", OIDC)
    broken = write(tmp_path, "d-broken.yaml", variant(OIDC, metadata__name="idp-b",
                                                      spec__oidc__issuer="ftp://x"))
    result = load_policies([tmp_path])
    assert [p.policy.name for p in result.policies] == ["payments"]
    assert [p.resource.name for p in result.identity_providers] == ["auth0-prod", "idp-staging"]
    assert [str(e) for e in result.errors] == [
        f"{broken}: spec.oidc.issuer: 'ftp://x' is not an absolute https URL; write e.g. "
        "https://idp.example.com"]


# -- policies the provider cannot honour --------------------------------------------------------


def test_a_client_secret_policy_beside_a_provider_with_one_secret_is_refused(
        tmp_path: Path) -> None:
    policy = write(tmp_path, "secrets.yaml", SECRET_POLICY)
    idp = write(tmp_path, "auth0.yaml", AUTH0)
    write(tmp_path, "keys.yaml", KEY_POLICY)
    result = load_policies([tmp_path])
    assert [p.policy.name for p in result.policies] == ["payments"]  # the key policy is fine
    [error] = [str(e) for e in result.errors]
    assert error.startswith(f"{policy}: spec.rotation.acceptSecretGap: policy "
                            f"'internal-secrets' rotates client secrets, and identity provider "
                            f"'auth0-prod' (auth0, {idp}) holds one client secret: "), error
    assert "the old one stops working when the new one is set" in error
    assert "set acceptSecretGap: true to accept that gap" in error
    assert "private_key_jwt" in error


def test_a_client_secret_policy_that_accepts_the_gap_loads_and_says_so_to_the_rotation(
        tmp_path: Path) -> None:
    write(tmp_path, "secrets.yaml", variant(SECRET_POLICY, spec__rotation__acceptSecretGap=True))
    write(tmp_path, "oidc.yaml", OIDC)
    result = load_policies([tmp_path])
    assert result.errors == ()
    [loaded] = result.policies
    assert to_plan_policy(loaded).params.accept_secret_gap is True


def test_without_a_provider_a_client_secret_policy_needs_no_acceptance(tmp_path: Path) -> None:
    write(tmp_path, "secrets.yaml", SECRET_POLICY)
    result = load_policies([tmp_path])
    assert result.errors == ()
    params = to_plan_policy(result.policies[0]).params
    assert (params.accept_secret_gap, params.accept_untested) == (False, False)


def test_accept_untested_reaches_the_rotation(tmp_path: Path) -> None:
    path = write(tmp_path, "jar.yaml", variant(
        KEY_POLICY, spec__credential__usage="jar", spec__rotation__acceptUntested=True))
    assert to_plan_policy(load_policy_file(path)).params.accept_untested is True


def test_only_a_client_secret_policy_may_accept_a_secret_gap(tmp_path: Path) -> None:
    path = write(tmp_path, "keys.yaml", variant(KEY_POLICY, spec__rotation__acceptSecretGap=True))
    assert refused_lines(path) == [
        f"{path}: spec.rotation.acceptSecretGap: only a client_secret rotation can have a "
        "secret gap, not private_key_jwt (its old and new credentials overlap); remove it"]


def test_accepting_a_gap_takes_a_boolean(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", variant(SECRET_POLICY, spec__rotation__acceptSecretGap="yes"))
    assert refused_lines(path) == [
        f"{path}: spec.rotation.acceptSecretGap: expected true or false, got 'yes'; write true "
        "or false"]


# -- secret references, resolved when the provider is built -------------------------------------


def test_an_env_reference_resolves_from_the_environment_and_never_shows() -> None:
    secret = SecretRef(env="AUTH0_MGMT_SECRET").resolve("here", {"AUTH0_MGMT_SECRET": SECRET})
    assert secret.get_secret_value() == SECRET
    assert SECRET not in repr(secret) and SECRET not in str(secret)


def test_a_file_reference_is_relative_to_the_resource_and_drops_one_newline(
        tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "auth0").write_text(SECRET + "\n")
    resource = provider(write(tmp_path, "idp.yaml", variant(
        AUTH0, spec__auth0__clientSecret={"file": "secrets/auth0"})))
    assert resource.spec.auth0 is not None
    ref = resource.spec.auth0.client_secret
    assert ref.file == tmp_path / "secrets" / "auth0"
    assert ref.resolve("here").get_secret_value() == SECRET
    assert SECRET not in repr(resource)


def test_a_missing_variable_is_one_line_naming_the_resource_and_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTH0_MGMT_SECRET", raising=False)
    resource = provider(write(tmp_path, "idp.yaml", AUTH0))
    with pytest.raises(InputError) as caught:
        build_identity_provider("auth0-prod", resource, state_of=_no_state,
                                keystore=MemoryKeystore())
    message = str(caught.value)
    assert message == ("identity provider auth0-prod: spec.auth0.clientSecret: environment "
                       "variable AUTH0_MGMT_SECRET is not set; set it in the orchestrator's "
                       "environment or use {file: PATH}")


def test_an_unreadable_secret_file_is_one_line(tmp_path: Path) -> None:
    ref = SecretRef(file=tmp_path / "nope")
    with pytest.raises(InputError) as caught:
        ref.resolve("identity provider a: spec.auth0.clientSecret")
    assert str(caught.value).startswith(
        f"identity provider a: spec.auth0.clientSecret: cannot read {tmp_path / 'nope'} "
        "(No such file or directory)")
    assert "\n" not in str(caught.value)


def test_an_empty_secret_is_refused_without_showing_anything(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(InputError, match="is empty"):
        SecretRef(file=tmp_path / "empty").resolve("x")
    with pytest.raises(InputError, match="environment variable A is empty"):
        SecretRef(env="A").resolve("x", {"A": ""})


PASTED = ["sk-live-51HxYzAbCdEf0123456789",  # a dash: no variable's name
          "AbCdEf0123456789_" * 4 + "x",  # longer than 64
          "9f86d081884c7d659a2feaa0c55ad015"]  # starts with a digit


@pytest.mark.parametrize("pasted", [*PASTED, 31415926535897932384])
def test_a_secret_pasted_as_the_env_name_is_refused_without_repeating_it(
        tmp_path: Path, pasted: object) -> None:
    path = write(tmp_path, "idp.yaml", variant(AUTH0, spec__auth0__clientSecret={"env": pasted}))
    [line] = refused_lines(path)
    assert line.startswith(f"{path}: spec.auth0.clientSecret.env: the env name is not a valid "
                           "variable name"), line
    assert "did you paste the secret itself? reference it by name" in line
    assert str(pasted) not in line


@pytest.mark.parametrize("pasted", ["sk_live_51HxYzAbCdEf0123456789",  # mixed case
                                    "a9f86d081884c7d659a2feaa0c55ad015"])  # a long run
def test_a_valid_name_that_looks_like_a_secret_is_not_repeated_when_it_is_not_set(
        pasted: str) -> None:
    ref = SecretRef(env=pasted)
    for environ in ({}, {pasted: ""}):
        with pytest.raises(InputError) as caught:
            ref.resolve("identity provider a: spec.auth0.clientSecret", environ)
        assert pasted not in str(caught.value)
        assert str(caught.value).startswith("identity provider a: spec.auth0.clientSecret: the "
                                            "environment variable named in env (its name is not "
                                            "repeated: it looks like a secret")
    assert pasted not in repr(ref)
    assert ref.resolve("x", {pasted: "v"}).get_secret_value() == "v"  # still a valid name


def test_a_name_that_reads_like_a_variable_is_repeated() -> None:
    for name in ("AUTH0_MGMT_SECRET", "oidc_iat", "A"):
        with pytest.raises(InputError, match=f"environment variable {name} is not set"):
            SecretRef(env=name).resolve("x", {})
        assert name in repr(SecretRef(env=name))


def test_loading_resolves_no_secret(tmp_path: Path) -> None:
    """policy validate runs where the secrets are not: a reference to nothing still loads."""
    data = variant(OIDC, spec__oidc__initialAccessToken={"file": "nowhere/iat"})
    resource = provider(write(tmp_path, "idp.yaml", data))
    assert resource.spec.oidc is not None
    assert resource.spec.oidc.initial_access_token == SecretRef(file=tmp_path / "nowhere/iat")


def _no_state(app: str) -> Any:
    raise AssertionError("a provider is built without reading any application")


# -- built providers: one per resource, kept across reloads -------------------------------------


class Built:
    """A provider stand-in that records what it was built from (the cache is under test)."""

    def __init__(self, name: str, resource: IdentityProvider) -> None:
        self.name, self.resource = name, resource


def test_a_provider_is_built_once_per_resource_and_kept_while_it_is_unchanged(
        tmp_path: Path) -> None:
    auth0 = provider(write(tmp_path, "a.yaml", AUTH0))
    oidc = provider(write(tmp_path, "b.yaml", OIDC))
    builds: list[str] = []

    def build(name: str, resource: IdentityProvider) -> Any:
        builds.append(name)
        return Built(name, resource)

    cache: dict[str, Any] = {}
    first = BuiltProviders({"auth0-prod": auth0, "idp-staging": oidc}, cache, build)
    assert sorted(first) == ["auth0-prod", "idp-staging"] and builds == []  # naming builds none
    made = first["auth0-prod"]
    assert first["auth0-prod"] is made and builds == ["auth0-prod"]
    reloaded = provider(write(tmp_path, "a2.yaml", "# a comment changes nothing\n"
                              + yaml.safe_dump(AUTH0)))
    assert BuiltProviders({"auth0-prod": reloaded}, cache, build)["auth0-prod"] is made
    changed = provider(write(tmp_path, "a3.yaml", variant(
        AUTH0, spec__auth0__rateLimit={"perSecond": 5})))
    rebuilt = BuiltProviders({"auth0-prod": changed}, cache, build)["auth0-prod"]
    assert rebuilt is not made and isinstance(rebuilt, Built) and rebuilt.resource == changed
    assert builds == ["auth0-prod", "auth0-prod"]
    gone: Mapping[str, Any] = BuiltProviders({}, cache, build)
    assert (len(gone), cache) == (0, {})
    assert gone.get("auth0-prod") is None


# -- the reload source --------------------------------------------------------------------------


def test_the_source_offers_the_providers_reloads_them_and_keeps_the_last_good_one(
        tmp_path: Path) -> None:
    store = InMemoryEventStore(lambda: NOW)
    source = PolicySource(tmp_path, store, lambda: NOW)
    idp = write(tmp_path, "auth0.yaml", AUTH0)
    write(tmp_path, "keys.yaml", KEY_POLICY)
    first = source.identity_providers()  # loaded on first use, without a tick
    assert list(first) == ["auth0-prod"]
    assert [p.name for p in source.current()] == ["payments"]
    assert source.identity_providers() is first  # nothing changed: the same mapping
    write(tmp_path, "auth0.yaml", variant(AUTH0, spec__auth0__maxCredentials=6))
    write(tmp_path, "oidc.yaml", OIDC)
    source.current()
    now = source.identity_providers()
    assert list(now) == ["auth0-prod", "idp-staging"]
    assert now["auth0-prod"].spec.auth0 is not None
    assert now["auth0-prod"].spec.auth0.max_credentials == 6
    write(tmp_path, "auth0.yaml", variant(AUTH0, spec__auth0__clientSecret=SECRET))
    source.current()
    kept = source.identity_providers()["auth0-prod"].spec.auth0
    assert kept is not None and kept.max_credentials == 6  # the broken file's last good version
    assert source.errors == (f"{idp}: spec.auth0.clientSecret: {INLINE}",)
    applied = [(r.stream_id, r.payload["content_hash"][:7]) for r in store.read(ReadFilter())
               if r.type == "policy.applied"]
    assert [s for s, _ in applied] == ["policy:payments", "identity-provider:auth0-prod",
                                       "identity-provider:auth0-prod",
                                       "identity-provider:idp-staging"]
    [rejected] = [r.payload for r in store.read(ReadFilter()) if r.type == "policy.rejected"]
    assert rejected["path"] == str(idp)
    assert rejected["error"] == f"{idp}: spec.auth0.clientSecret: {INLINE}"
    assert not any(SECRET in str(r.payload) for r in store.read(ReadFilter()))


def test_without_a_folder_there_are_no_providers_and_nothing_is_logged(tmp_path: Path) -> None:
    source = PolicySource(tmp_path / "absent", None, lambda: NOW)
    with capture_logs() as logs:
        assert dict(source.identity_providers()) == {}
    assert logs == []
