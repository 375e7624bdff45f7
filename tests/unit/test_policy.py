"""Policy files, as specifications: what loads, and how each dangerous file is refused.

Every refusal is checked for its one line, ``<file>: <field as spelt in YAML>: <what>; <fix>``.
Broken files are written into ``tmp_path``; the examples in ``policies/`` are globbed, so a new
example is covered without touching this file.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from orchestrator.domain.durations import format_duration, parse_duration
from orchestrator.domain.errors import PolicyError
from orchestrator.policies.files import (
    LoadedPolicy,
    PolicyFileError,
    find_conflicts,
    load_policies,
    load_policy_file,
    validate_paths,
)
from orchestrator.policies.models import Algorithm, Usage
from tests.conftest import NOW
from tests.helpers import certificate, rsa_key, variant
from tests.helpers import write_yaml as write

EXAMPLES = sorted((Path(__file__).parents[2] / "policies").glob("*.yaml"))
DAY, HOUR = timedelta(days=1), timedelta(hours=1)

VALID: dict[str, Any] = {
    "apiVersion": "orchestrator/v1",
    "kind": "RotationPolicy",
    "metadata": {"name": "payments-private-key-jwt"},
    "spec": {
        "selector": {"apps": ["payments-*"], "labels": {"env": "prod"}},
        "credential": {"usage": "private_key_jwt", "algorithm": "PS256", "keySize": 3072},
        "rotation": {
            "every": "90d",
            "beforeExpiry": "14d",
            "overlap": "24h",
            "window": {"cron": "0 2 * * 1-5", "duration": "3h", "timezone": "Europe/Berlin"},
        },
        "lifetime": "120d",
        "retention": "7d",
    },
}
SECRET: dict[str, Any] = {
    **VALID,
    "metadata": {"name": "internal-secrets"},
    "spec": {
        "selector": {"apps": ["internal-*"]},
        "credential": {"usage": "client_secret"},
        "rotation": {"every": "30d", "beforeExpiry": "7d", "overlap": "1h"},
    },
}
MTLS: dict[str, Any] = {
    **VALID,
    "metadata": {"name": "partner-mtls"},
    "spec": {
        "selector": {"apps": ["partner-*"]},
        "credential": {"usage": "mtls", "certificate": {"subject": "CN={app},O=Example Corp"}},
        "rotation": {"every": "30d", "beforeExpiry": "7d", "overlap": "72h"},
        "lifetime": "45d",
    },
}


def refusal(path: Path) -> PolicyFileError:
    with pytest.raises(PolicyFileError) as refused:
        load_policy_file(path)
    assert all("\n" not in line for line in refused.value.errors)
    assert str(refused.value) == refused.value.errors[0]
    return refused.value


# --- the examples --------------------------------------------------------------------------


def test_there_are_examples_for_every_usage() -> None:
    usages = {load_policy_file(path).policy.usage for path in EXAMPLES}
    assert usages == set(Usage)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: f"{path.name} loads cleanly")
def test_every_example_loads(path: Path) -> None:
    loaded = load_policy_file(path)
    assert loaded.path == path and loaded.policy.name == path.stem
    assert loaded.content_hash == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_all_examples_load_together_without_overlapping_selectors() -> None:
    result = load_policies([EXAMPLES[0].parent])
    assert [str(e) for e in result.errors] == []
    assert [p.path for p in result.policies] == EXAMPLES
    assert validate_paths([EXAMPLES[0].parent]) == []


def test_the_payments_example_reads_as_written() -> None:
    policy = load_policy_file(EXAMPLES[0].parent / "payments-private-key-jwt.yaml").policy
    spec = policy.spec
    assert (spec.credential.algorithm, spec.credential.key_size) == (Algorithm.PS256, 3072)
    assert (spec.rotation.every, spec.rotation.before_expiry) == (90 * DAY, 14 * DAY)
    assert (spec.rotation.overlap, spec.lifetime, spec.retention) == (DAY, 120 * DAY, 7 * DAY)
    assert spec.rotation.window is not None and spec.rotation.window.timezone == "Europe/Berlin"
    assert policy.matches("payments-api", {"env": "prod", "team": "pay"})
    assert not policy.matches("payments-api", {"env": "staging"})
    assert not policy.matches("checkout-api", {"env": "prod"})


# --- defaults ------------------------------------------------------------------------------


def test_omitted_keys_take_their_defaults(tmp_path: Path) -> None:
    data = variant(VALID, spec__credential={"usage": "jar"}, spec__rotation__window=None,
                   spec__retention=None)
    spec = load_policy_file(write(tmp_path, "p.yaml", data)).policy.spec
    assert (spec.credential.algorithm, spec.credential.key_size) == (Algorithm.RS256, 2048)
    assert (spec.rotation.max_per_tick, spec.retention) == (50, 7 * DAY)
    retry = spec.rotation.retry
    assert (retry.attempts, retry.backoff, retry.max_backoff) == (5, timedelta(minutes=1), HOUR)
    assert retry.budget == timedelta(minutes=15)  # 1m + 2m + 4m + 8m between five attempts


def test_a_window_defaults_to_utc(tmp_path: Path) -> None:
    data = variant(VALID, spec__rotation__window={"cron": "0 2 * * *", "duration": "3h"})
    window = load_policy_file(write(tmp_path, "p.yaml", data)).policy.spec.rotation.window
    assert window is not None and window.timezone == "UTC"


def test_a_client_secret_needs_no_lifetime_and_gets_no_key_defaults(tmp_path: Path) -> None:
    spec = load_policy_file(write(tmp_path, "p.yaml", SECRET)).policy.spec
    assert spec.lifetime is None
    assert (spec.credential.algorithm, spec.credential.key_size) == (None, None)


def test_retention_may_be_zero(tmp_path: Path) -> None:
    data = variant(VALID, spec__retention="0s")
    assert load_policy_file(write(tmp_path, "p.yaml", data)).policy.spec.retention == timedelta(0)


# --- refusals: one line naming the file and the field ---------------------------------------

NO_WINDOW: dict[str, Any] = variant(VALID, spec__rotation__window=None)

REFUSALS = [
    pytest.param(variant(VALID, foo=1), "foo",
                 "unknown key 'foo' (allowed: apiVersion, kind, metadata, spec)",
                 id="an unknown top-level key is refused with the allowed keys"),
    pytest.param(variant(VALID, spec__rotation__overlapp="1h"), "spec.rotation.overlapp",
                 "unknown key 'overlapp' (allowed: every, beforeExpiry, overlap, window, "
                 "maxPerTick, retry, acceptUntested, acceptSecretGap); remove it or fix its "
                 "spelling",
                 id="an unknown nested key is refused with the keys allowed there"),
    pytest.param(variant(VALID, spec__rotation__window__tz="UTC"), "spec.rotation.window.tz",
                 "(allowed: cron, duration, timezone)",
                 id="an unknown key deep in the window is refused too"),
    pytest.param(variant(VALID, spec__rotation__every="90 days"), "spec.rotation.every",
                 "'90 days' is not a duration; write a whole number with a unit (45s, 30m, "
                 "24h, 90d, 2w)",
                 id="a duration in words is refused with the accepted forms"),
    pytest.param(variant(VALID, spec__rotation__every=90), "spec.rotation.every",
                 "90 has no unit; write e.g. 90s, 90m, 90h or 90d",
                 id="a bare number is refused because it has no unit"),
    pytest.param(variant(VALID, spec__rotation__every="0s"), "spec.rotation.every",
                 "is not longer than zero",
                 id="a zero rotation age is refused"),
    pytest.param(variant(VALID, spec__rotation__overlap="100d"), "spec.rotation.overlap",
                 "100d is not shorter than every (90d)",
                 id="an overlap longer than the rotation age is refused"),
    pytest.param(variant(VALID, spec__rotation__beforeExpiry="12h"), "spec.rotation.beforeExpiry",
                 "make beforeExpiry longer than 1d15m",
                 id="beforeExpiry shorter than the overlap is refused"),
    pytest.param(variant(NO_WINDOW, spec__lifetime="91d"), "spec.lifetime",
                 "91d is too short: a credential is due at 90d (every), may spend 15m on "
                 "retries and then overlaps 1d, so it could expire before its replacement has "
                 "overlapped; make lifetime at least 91d15m",
                 id="a lifetime shorter than every + retries + overlap is refused"),
    pytest.param(variant(VALID, spec__lifetime="100d",
                         spec__rotation__window={"cron": "0 2 1 * *", "duration": "3h"}),
                 "spec.lifetime",
                 "may wait 31d for its window, may spend 15m on retries and then overlaps 1d, "
                 "so it could expire before its replacement has overlapped; make lifetime at "
                 "least 122d15m",
                 id="a lifetime that a monthly window could outwait is refused"),
    pytest.param(variant(VALID, spec__lifetime="93d"), "spec.lifetime",
                 "make lifetime at least 94d1h15m",
                 id="a lifetime that a weekend without window could outwait is refused"),
    pytest.param(variant(NO_WINDOW, spec__lifetime="100d", spec__rotation__beforeExpiry="99d",
                         spec__rotation__every="95d"),
                 "spec.rotation.beforeExpiry",
                 "would be due again as soon as its rotation completed",
                 id="a beforeExpiry that makes every new credential due at once is refused"),
    pytest.param(variant(VALID, spec__lifetime=None), "spec.lifetime",
                 "required for private_key_jwt; add e.g. lifetime: 120d",
                 id="a key without a lifetime is refused"),
    pytest.param(variant(VALID, spec__rotation__window__cron="0 2 * * 8"),
                 "spec.rotation.window.cron", "day-of-week '8' is not a day",
                 id="a bad cron is refused"),
    pytest.param(variant(VALID, spec__rotation__window__cron="0 2 30 2 *"),
                 "spec.rotation.window.cron", "does not open once in the 400 days",
                 id="a window that never opens is refused"),
    pytest.param(variant(VALID, spec__rotation__window__timezone="Europe/Berln"),
                 "spec.rotation.window.timezone",
                 "unknown time zone 'Europe/Berln'; did you mean Europe/Berlin?",
                 id="an unknown time zone is refused"),
    pytest.param(variant(VALID, apiVersion="orchestrator/v2"), "apiVersion",
                 "'orchestrator/v2' is not allowed; use 'orchestrator/v1'",
                 id="a wrong apiVersion is refused"),
    pytest.param(variant(VALID, kind="Policy"), "kind",
                 "'Policy' is not a resource kind; use RotationPolicy, IdentityProvider or Notifier",
                 id="an unknown kind is refused naming the known ones"),
    pytest.param(variant(VALID, apiVersion=None), "apiVersion", "required key missing; add it",
                 id="a missing apiVersion is refused"),
    pytest.param(variant(VALID, metadata__name="Payments_JWT"), "metadata.name",
                 "'Payments_JWT' is not a valid name; use 1-63 lowercase letters",
                 id="a name with capitals and underscores is refused"),
    pytest.param(variant(VALID, spec__selector__apps=[]), "spec.selector.apps",
                 "needs at least 1 item; add one",
                 id="a selector without apps is refused"),
    pytest.param(variant(VALID, spec__selector__apps="payments-*"), "spec.selector.apps",
                 "expected a list",
                 id="apps written as one string is refused"),
    pytest.param(variant(VALID, spec__selector__labels={"tier": 1}), "spec.selector.labels.tier",
                 "expected text, got 1; quote it",
                 id="a label value that YAML reads as a number is refused"),
    pytest.param(variant(VALID, spec__credential__usage="oauth"), "spec.credential.usage",
                 "'oauth' is not allowed; use 'private_key_jwt', 'jar', 'mtls' or 'client_secret'",
                 id="an unknown usage is refused with the usages"),
    pytest.param(variant(VALID, spec__credential__keySize=1024), "spec.credential.keySize",
                 "1024 is not allowed; use 2048, 3072 or 4096",
                 id="a weak key size is refused"),
    pytest.param(variant(MTLS, spec__credential__certificate=None), "spec.credential.certificate",
                 "mtls needs a certificate",
                 id="mtls without a certificate is refused"),
    pytest.param(variant(MTLS, spec__credential__certificate__subject="CN=partner,O=Example"),
                 "spec.credential.certificate.subject",
                 "'CN=partner,O=Example' has no {app}, so every application the selector "
                 "matches would get the same subject DN",
                 id="one subject DN for a selector that matches many apps is refused"),
    pytest.param(variant(MTLS, spec__credential__certificate__subject="partner"),
                 "spec.credential.certificate.subject", "is not an RFC 4514 name",
                 id="a subject that is not a DN is refused"),
    pytest.param(variant(VALID, spec__credential__certificate={"subject": "CN={app}"}),
                 "spec.credential.certificate", "only mtls has a certificate",
                 id="a certificate for a key usage is refused"),
    pytest.param(variant(SECRET, spec__credential__keySize=2048), "spec.credential.keySize",
                 "a client secret has no keySize; remove it",
                 id="a client secret with a key size is refused"),
    pytest.param(variant(SECRET, spec__credential__algorithm="RS256"),
                 "spec.credential.algorithm", "a client secret has no algorithm",
                 id="a client secret with an algorithm is refused"),
    pytest.param(variant(VALID, spec__rotation__maxPerTick=0), "spec.rotation.maxPerTick",
                 "0 is too small; use 1 or more",
                 id="a per-tick cap of zero is refused"),
    pytest.param(variant(VALID, spec__rotation__retry={"backoff": "2h"}),
                 "spec.rotation.retry.maxBackoff", "1h is shorter than backoff (2h)",
                 id="a maximum backoff below the backoff is refused"),
    pytest.param(variant(VALID, spec__delivery={"hook": {"command": []}}),
                 "spec.delivery.hook.command", "needs at least 1 item",
                 id="a delivery hook without a command is refused"),
    pytest.param(variant(VALID, spec__delivery={"hook": {"command": [" ", "x"]}}),
                 "spec.delivery.hook.command", "the program (the first item) is empty",
                 id="a delivery hook with an empty program is refused"),
    pytest.param(variant(VALID, spec__delivery={"hook": {"command": ["true"],
                                                         "timeout": "1h"}}),
                 "spec.delivery.hook.timeout", "1h is longer than 10m",
                 id="a delivery hook timeout over ten minutes is refused"),
    pytest.param(variant(VALID, spec__delivery={"hook": {"command": "reload.sh"}}),
                 "spec.delivery.hook.command", "expected a list, got 'reload.sh'",
                 id="a delivery hook given as a shell line is refused"),
]


@pytest.mark.parametrize(("data", "field", "fragment"), REFUSALS)
def test_a_dangerous_policy_is_refused_naming_file_and_field(
    tmp_path: Path, data: dict[str, Any], field: str, fragment: str
) -> None:
    path = write(tmp_path, "broken.yaml", data)
    error = refusal(path)
    assert isinstance(error, PolicyError)
    assert str(error).startswith(f"{path}: {field}: "), str(error)
    assert fragment in str(error)
    assert ";" in str(error).removeprefix(f"{path}: {field}: ")  # what is wrong; what to do


def test_every_problem_in_a_file_is_listed_one_line_each(tmp_path: Path) -> None:
    data = variant(VALID, spec__rotation__every="soon", spec__credential__keySize=1)
    error = refusal(path := write(tmp_path, "p.yaml", data))
    assert [line.split(": ")[1] for line in error.errors] == [
        "spec.credential.keySize", "spec.rotation.every"]
    assert validate_paths([path]) == error.errors


TEXT_REFUSALS = [
    pytest.param("apiVersion: orchestrator/v1\nkind: [RotationPolicy\n",
                 "line 3, column 1: expected ',' or ']', but got '<stream end>' (while parsing a "
                 "flow sequence, line 2)",
                 id="a YAML syntax error is refused with its line"),
    pytest.param("apiVersion: orchestrator/v1\n  kind: x\n", "line 2, column 7: mapping "
                 "values are not allowed here; fix the YAML there",
                 id="bad indentation is refused with its line"),
    pytest.param("", "the file is empty; write a resource", id="an empty file is refused"),
    pytest.param("# nothing yet\n", "the file is empty", id="a file of comments is refused"),
    pytest.param("- apiVersion: orchestrator/v1\n", "holds a list, not a mapping",
                 id="a list instead of a mapping is refused"),
    pytest.param("kind: RotationPolicy\nkind: RotationPolicy\n",
                 "line 2, column 1: key 'kind' appears twice in one mapping",
                 id="a key given twice is refused (YAML would keep the last silently)"),
]


@pytest.mark.parametrize(("text", "fragment"), TEXT_REFUSALS)
def test_a_file_that_is_not_a_policy_document_is_refused(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = write(tmp_path, "broken.yaml", text)
    assert str(refusal(path)).startswith(f"{path}: {fragment}")


def _ca_files(folder: Path, *, ca: bool = True, own_key: bool = True) -> tuple[bytes, bytes]:
    """A CA certificate (PEM) and a private key (PEM): its own, or another one."""
    key = rsa_key()
    cert = certificate(key, "CN=Acme CA", not_before=NOW - timedelta(days=1),
                       not_after=NOW + timedelta(days=3650), ca=ca)
    signer = key if own_key else rsa_key()
    return cert, signer.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def test_an_issuer_is_read_relative_to_the_policy_file(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    cert, key = _ca_files(tmp_path)
    (tmp_path / "ca" / "acme-ca.pem").write_bytes(cert)
    issuer = {"certificate": "ca/acme-ca.pem", "key": "ca/acme-ca.key"}
    data = variant(MTLS, spec__credential__certificate__issuer=issuer)
    path = write(tmp_path, "p.yaml", data)
    assert str(refusal(path)) == (
        f"{path}: spec.credential.certificate.issuer.key: {tmp_path / 'ca/acme-ca.key'} does "
        "not exist; fix the path (relative paths start at the policy's folder)")
    (tmp_path / "ca" / "acme-ca.key").write_bytes(key)
    certificate_spec = load_policy_file(path).policy.spec.credential.certificate
    assert certificate_spec is not None and certificate_spec.issuer is not None
    assert certificate_spec.issuer.key == Path("ca/acme-ca.key")  # as written


@pytest.mark.parametrize(("files", "fragments"), [
    pytest.param({"cert": b"not a certificate"},
                 ["issuer.certificate: ", "is not a PEM certificate"],
                 id="a certificate file that holds no certificate is refused"),
    pytest.param({"key": b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
                 ["issuer.key: ", "is not an unencrypted PEM private key"],
                 id="a key file that holds no key is refused"),
    pytest.param({"ca": False}, ["is not a CA certificate"],
                 id="a certificate that is not a CA's is refused"),
    pytest.param({"own_key": False}, ["issuer.key: ", "is not the key of"],
                 id="a key that is not the certificate's is refused"),
])
def test_an_issuer_that_cannot_issue_is_refused_at_load(
        tmp_path: Path, files: dict[str, Any], fragments: list[str]) -> None:
    cert, key = _ca_files(tmp_path, ca=files.get("ca", True),
                          own_key=files.get("own_key", True))
    (tmp_path / "ca.pem").write_bytes(files.get("cert", cert))
    (tmp_path / "ca.key").write_bytes(files.get("key", key))
    issuer = {"certificate": "ca.pem", "key": "ca.key"}
    path = write(tmp_path, "p.yaml", variant(MTLS, spec__credential__certificate__issuer=issuer))
    (line,) = refusal(path).errors
    assert all(fragment in line for fragment in fragments), line
    assert "AAAA" not in line  # never the content


# --- several files ---------------------------------------------------------------------------

OVERLAPS = [
    pytest.param(["payments-*"], {"env": "prod"}, ["payments-api"], {}, True,
                 id="a glob and a name it matches overlap when the other has no labels"),
    pytest.param(["payments-*"], {"env": "prod"}, ["*-api"], {"team": "pay"}, True,
                 id="two globs that can match one name overlap though neither matches the other"),
    pytest.param(["payments-*"], {"env": "prod"}, ["payments-*"], {"env": "prod"}, True,
                 id="identical selectors overlap"),
    pytest.param(["payments-*"], {"env": "prod"}, ["payments-*"], {"env": "staging"}, False,
                 id="the same glob with contradicting labels does not overlap"),
    pytest.param(["payments-*"], {}, ["partner-*", "internal-?"], {}, False,
                 id="globs with different fixed prefixes do not overlap"),
]


@pytest.mark.parametrize(("apps_a", "labels_a", "apps_b", "labels_b", "overlap"), OVERLAPS)
def test_overlapping_selectors_across_two_files_are_refused(
    tmp_path: Path, apps_a: list[str], labels_a: dict[str, str], apps_b: list[str],
    labels_b: dict[str, str], overlap: bool,
) -> None:
    first = write(tmp_path, "a.yaml", variant(VALID, metadata__name="a",
                                              spec__selector={"apps": apps_a, "labels": labels_a}))
    second = write(tmp_path, "b.yaml", variant(VALID, metadata__name="b",
                                               spec__selector={"apps": apps_b, "labels": labels_b}))
    result = load_policies([tmp_path])
    if not overlap:
        assert result.errors == () and len(result.policies) == 2
        return
    (error,) = result.errors
    assert str(error).startswith(f"{first}: spec.selector: policy 'a' and policy 'b' ({second})")
    assert "usage private_key_jwt" in str(error)
    assert str(error).endswith(
        "; narrow one selector (apps or labels) so each application has one policy per usage")
    assert result.policies == ()  # neither is applied while they fight


def test_the_same_selector_for_different_usages_is_no_conflict(tmp_path: Path) -> None:
    write(tmp_path, "keys.yaml", variant(VALID, metadata__name="keys"))
    write(tmp_path, "jar.yaml", variant(VALID, metadata__name="jar",
                                        spec__credential={"usage": "jar"}))
    assert load_policies([tmp_path]).errors == ()


def test_two_files_with_one_name_are_refused_naming_both(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", VALID)
    second = write(tmp_path, "b.yaml", variant(VALID, spec__selector__apps=["billing-*"]))
    result = load_policies([tmp_path])
    assert [str(e) for e in result.errors] == [
        f"{first}: metadata.name: 'payments-private-key-jwt' is also the name of the policy in "
        f"{second}; give each policy a unique name"]
    assert result.policies == ()


def test_a_broken_file_is_reported_and_the_others_still_load(tmp_path: Path) -> None:
    write(tmp_path, "a-good.yaml", VALID)
    broken = write(tmp_path, "b-broken.yml", variant(SECRET, spec__rotation__overlap="1y"))
    write(tmp_path, "c-secret.yml", SECRET)
    write(tmp_path, "notes.txt", "not a policy")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "ignored.yaml", "{}")  # folders are not searched recursively
    result = load_policies([tmp_path])
    assert [p.path.name for p in result.policies] == ["a-good.yaml", "c-secret.yml"]
    (error,) = result.errors
    assert str(error).startswith(f"{broken}: spec.rotation.overlap: '1y' is not a duration")


def test_files_and_folders_can_be_mixed_and_each_file_loads_once(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID)
    result = load_policies([path, tmp_path, tmp_path / "missing"])
    assert [p.path for p in result.policies] == [path]
    assert [str(e) for e in result.errors] == [
        f"{tmp_path / 'missing'}: no such file or folder; check the path"]


# --- a concrete fleet ---------------------------------------------------------------------------


def loaded(tmp_path: Path, name: str, data: dict[str, Any]) -> LoadedPolicy:
    return load_policy_file(write(tmp_path, f"{name}.yaml", variant(data, metadata__name=name)))


def test_an_application_claimed_twice_for_one_usage_is_named_with_both_policies(
    tmp_path: Path,
) -> None:
    pay = loaded(tmp_path, "pay", VALID)
    api = loaded(tmp_path, "api", variant(VALID, spec__selector={"apps": ["*-api"]}))
    jar = loaded(tmp_path, "jar", variant(VALID, spec__credential={"usage": "jar"}))
    fleet = [("payments-api", {"env": "prod"}), ("payments-web", {"env": "prod"}),
             ("payments-api-2", {"env": "staging"}), ("search-api", {})]
    assert find_conflicts([pay, api, jar], fleet) == [
        f"application 'payments-api': usage private_key_jwt is claimed by policy 'pay' "
        f"({pay.path}) and policy 'api' ({api.path}); narrow one selector (apps or labels) so "
        "each application has one policy per usage"]


# --- durations -------------------------------------------------------------------------------

DURATIONS = [
    pytest.param("90d", 90 * DAY, id="90d is ninety days"),
    pytest.param("24h", 24 * HOUR, id="24h is a day"),
    pytest.param("30m", timedelta(minutes=30), id="30m is thirty minutes, not months"),
    pytest.param("45s", timedelta(seconds=45), id="45s is seconds"),
    pytest.param("2w", 14 * DAY, id="2w is two weeks"),
    pytest.param("1d12h", 36 * HOUR, id="units combine largest first"),
    pytest.param("P90D", 90 * DAY, id="ISO 8601 days"),
    pytest.param("PT24H", 24 * HOUR, id="ISO 8601 hours"),
    pytest.param("P1DT12H30M", 36 * HOUR + timedelta(minutes=30), id="ISO 8601 combined"),
    pytest.param("P2W", 14 * DAY, id="ISO 8601 weeks"),
]


@pytest.mark.parametrize(("text", "expected"), DURATIONS)
def test_durations_as_ops_write_them(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["90", "1.5h", "12h1d", "P1M", "P1Y", "", "PT", "-1d", "30M"],
                         ids=lambda text: f"{text!r} is not a duration")
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration; write a whole number with a unit"):
        parse_duration(text)
