"""Bad input met from the outside, refused the way every refusal is: one line ``error: ...`` on
stderr, a non-zero exit, no traceback, and nothing written (not a row, not a keystore item).

Each row is one input that ended in a traceback, or was silently accepted, before (issue 6,
section 2, defects 9, 10, 11 and 13); the ids read as the behaviour they pin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.helpers import (
    PEM,
    SPKI,
    Cli,
    assert_refused,
    dump_tables,
    policy_yaml,
    rsa_key,
)


def policy(name: str = "shop-keys", every: str = "90d", attempts: str = "5") -> str:
    return policy_yaml(name, '["shop"]', "{usage: private_key_jwt}",
                       f"{{every: {every}, beforeExpiry: 14d, overlap: 1h, "
                       f"retry: {{attempts: {attempts}}}}}")


@dataclass(frozen=True)
class Site:
    cli: Cli
    root: Path

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.root / "inputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        return path

    def folder(self, name: str, files: dict[str, str | bytes]) -> Path:
        for filename, content in files.items():
            self.file(f"{name}/{filename}", content)
        return self.root / "inputs" / name


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """One SQLite database with application ``shop``, which has a client secret already."""
    root = tmp_path_factory.mktemp("refusals")
    cli = Cli(f"sqlite:///{root / 'orchestrator.db'}", root / "keystore", cwd=root)
    cli.env.update(ORCHESTRATOR_DELIVERY=str(root / "delivery"),
                   ORCHESTRATOR_POLICIES=str(root / "no-policies"))
    cli("app", "register", "shop")
    cli("secret", "rotate", "shop")
    return Site(cli, root)


Args = Callable[[Site], list[str | Path]]


def _plain(*args: str) -> Args:
    return lambda _site: list(args)


ADD = ("credential", "add", "shop", "--usage", "private_key_jwt", "--generate")


def billion_laughs() -> str:
    """Nine levels of nine aliases: 9**9 strings once expanded (the classic bomb)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 10)]
    return policy() + "\n".join(lines) + "\n"


def rsa_public(e: int = 65537, times: int = 1) -> bytes:
    """An RSA public key PEM from public numbers: a real modulus (times 1), or a fake one."""
    n = rsa_key().public_key().public_numbers().n * times
    return rsa.RSAPublicNumbers(e, n).public_key().public_bytes(PEM, SPKI)


def mtls_policy_with_issuer(site: Site, certificate: bytes) -> Path:
    key = rsa_key().private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    folder = site.folder("issuer", {"ca.pem": certificate, "ca.key": key, "p.yaml": (
        policy_yaml("partner-mtls", '["partner-*"]',
                    '{usage: mtls, certificate: {subject: "CN={app}", '
                    "issuer: {certificate: ca.pem, key: ca.key}}}",
                    "{every: 30d, beforeExpiry: 7d, overlap: 1d}", lifetime="45d"))})
    return folder / "p.yaml"


OVERSIZED = policy() + "#" * 100 + "\n" + ("# padding\n" * 120_000)  # 1.2 MB of comments

REFUSALS = [
    # defect 9: times and durations beyond what datetime can hold
    pytest.param(_plain(*ADD, "--expires-at", "9999-12-31T23:59:59-05:00"),
                 "outside the years 1 to 9999",
                 id="an expiry that is in the year 10000 in UTC is refused"),
    pytest.param(_plain(*ADD, "--expires-at", "0001-01-01T00:00:00+01:00"),
                 "outside the years 1 to 9999",
                 id="an expiry that is in the year 0 in UTC is refused"),
    pytest.param(_plain("audit", "--since", "0001-01-01T00:00:00+01:00"),
                 "outside the years 1 to 9999",
                 id="audit since an instant before the year 1 is refused"),
    pytest.param(_plain("state", "shop", "--at", "0001-01-01T00:00:00+00:01"),
                 "outside the years 1 to 9999",
                 id="state at an instant before the year 1 is refused"),
    pytest.param(_plain("secret", "rotate", "shop", "--grace", "99999999d"),
                 "longer than 36500d", id="a grace of 99999999 days is refused"),
    pytest.param(_plain("secret", "rotate", "shop", "--grace", "P99999999999D"),
                 "longer than 36500d", id="an ISO grace of 99999999999 days is refused"),
    pytest.param(_plain("daemon", "--once", "--interval", "inf"), "between 0.1 and 86400",
                 id="a daemon interval of inf is refused"),
    pytest.param(_plain("daemon", "--once", "--interval", "nan"), "between 0.1 and 86400",
                 id="a daemon interval of nan is refused"),
    pytest.param(_plain("daemon", "--once", "--interval", "1e308"), "between 0.1 and 86400",
                 id="a daemon interval of 1e308 seconds is refused"),
    pytest.param(_plain("daemon", "--once", "--lease-timeout", "1s"), "give 2s or more",
                 id="a lease time limit too short to keep is refused"),
    pytest.param(_plain("daemon", "--once", "--lease-timeout", "soon"), "is not a duration",
                 id="a lease time limit that is no duration is refused"),
    pytest.param(_plain("simulate", "--days", "3660", "--start", "9999-06-01T00:00:00Z"),
                 "runs past 9990-01-01", id="a simulation running past the end of time is refused"),
    pytest.param(_plain("simulate", "--tick", "99999999999"), "1<=x<=525600",
                 id="a simulation tick of 99999999999 minutes is refused"),
    pytest.param(_plain("simulate", "--apps", "10000000000"), "1<=x<=1000000",
                 id="a simulation of ten billion applications is refused"),
    pytest.param(lambda s: ["simulate", "--days", "1", "--apps", "2", "--policies", s.folder(
                     "unmatchable", {"p.yaml": policy_yaml(
                         "brackets", '["[[[a**"]', "{usage: client_secret}",
                         "{every: 1d, beforeExpiry: 20h, overlap: 1h}", lifetime=None)})],
                 "match too few names", id="a simulation of a selector no name matches is "
                 "refused rather than searched for ever"),
    pytest.param(_plain("app", "register", "--from-file", "/dev/zero"), "larger than 16 MiB",
                 id="registering from an endless file is refused"),
    pytest.param(lambda s: ["policy", "validate",
                            s.file("every.yaml", policy(every="999999999999999d"))],
                 "spec.rotation.every: '999999999999999d' is longer than 36500d",
                 id="a policy rotating every 999999999999999 days is refused"),
    pytest.param(lambda s: ["policy", "validate", s.file("attempts.yaml", policy(attempts="5000"))],
                 "spec.rotation.retry.attempts: 5000 is too large; use 100 or fewer",
                 id="a policy retrying 5000 times is refused"),
    # defect 10: policy files that cost gigabytes or minutes to parse
    pytest.param(lambda s: ["policy", "validate", s.file("bomb.yaml", billion_laughs())],
                 "anchors and aliases (&name, *name) are not allowed",
                 id="a billion laughs policy is refused at its first anchor"),
    pytest.param(lambda s: ["daemon", "--once", "--policies",
                            s.folder("bombed", {"bomb.yaml": billion_laughs()})],
                 "anchors and aliases", id="the daemon refuses to start on a billion laughs"),
    pytest.param(lambda s: ["policy", "validate", s.file("big.yaml", OVERSIZED)],
                 "larger than 1024 KiB", id="a policy file over 1 MiB is refused unread"),
    # defect 11: a fresh daemon has no last good version to keep
    pytest.param(lambda s: ["daemon", "--once", "--policies", s.root / "nonexistent"],
                 "not found, so the daemon does not start",
                 id="the daemon refuses to start without its policies folder"),
    pytest.param(lambda s: ["daemon", "--once", "--policies", s.folder("broken", {
                     "good.yaml": policy(), "broken.yaml": policy("other", every="soon")})],
                 "the daemon does not start on a policy set with problems",
                 id="the daemon refuses to start when one policy file is broken"),
    pytest.param(lambda s: ["daemon", "--once", "--policies", s.folder("overlap", {
                     "one.yaml": policy("one"), "two.yaml": policy("two")})],
                 "can both claim an application",
                 id="the daemon refuses to start when two policies overlap"),
    # defect 13: input accepted that fails later, or silently half used
    pytest.param(_plain("app", "register", "a" * 65), "1-64 letters",
                 id="an application name longer than the 64-character client id is refused"),
    pytest.param(lambda s: [*ADD[:5], "--pem", s.file("e3.pem", rsa_public(e=3))],
                 "public exponent 3 is not allowed", id="an RSA key with e=3 is refused"),
    pytest.param(lambda s: [*ADD[:5], "--pem", s.file("even.pem", rsa_public(times=2))],
                 "modulus is divisible by 2", id="an RSA key with an even modulus is refused"),
    pytest.param(lambda s: [*ADD[:5], "--pem", s.file("three.pem", rsa_public(times=3))],
                 "modulus is divisible by 3",
                 id="an RSA key whose modulus has a small factor is refused"),
    pytest.param(lambda s: [*ADD[:5], "--pem", s.file("two.pem", rsa_public() + rsa_public())],
                 "holds 2 PEM blocks", id="two concatenated public keys are refused"),
    pytest.param(_plain(*ADD[:5], "--pem", "/dev/zero"), "larger than 1 MiB",
                 id="a PEM file without end is refused after its first MiB"),
    pytest.param(_plain("app", "register", "labelled", "--label", "env=prod", "--label",
                        "env=dev"), "given twice", id="a label key given twice is refused"),
    pytest.param(_plain(*ADD, "--name", "\x1b]0;owned\x07key"), "control character",
                 id="a credential name with a terminal escape sequence is refused"),
    pytest.param(lambda s: ["policy", "validate",
                            mtls_policy_with_issuer(s, b"not a certificate")],
                 "issuer.certificate: ", id="an issuer certificate that is no certificate is "
                 "refused when the policy is validated"),
]


@pytest.mark.parametrize(("args", "fragment"), REFUSALS)
def test_bad_input_is_refused_in_one_line_and_nothing_is_written(
        site: Site, args: Args, fragment: str) -> None:
    argv = args(site)
    before = dump_tables(site.cli.db_url), site.cli.item_files()
    result = site.cli.run(*argv)
    assert_refused(result, fragment)
    assert (dump_tables(site.cli.db_url), site.cli.item_files()) == before


def test_control_characters_reach_the_terminal_escaped(site: Site) -> None:
    """Whatever a recorded value holds (here the actor, from ORCHESTRATOR_ACTOR), a table shows
    an escape sequence as text, never as the sequence itself."""
    actor = Cli(site.cli.db_url, site.cli.keystore, site.root, actor="cli:\x1b[31mmallory\x07",
                init=False)
    actor("app", "register", "escaped")
    shown = site.cli("audit", "--app", "escaped").stdout
    assert "\x1b" not in shown and "\x07" not in shown
    assert "cli:\\x1b[31mmallory\\x07" in shown
