"""The container image installs what CI tests: docker/Dockerfile and .ci/user-install (which
builds the environment tests/e2e/test_install.py checks) run the same pip commands on the same
sources, the wheel without extras. And the compose file's replicas share their state.

No container engine is needed: the files are read as text (and YAML).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
USER_INSTALL = ROOT / ".ci" / "user-install"
COMPOSE = ROOT / "docker" / "compose.yaml"

# Flags that change how pip works, not what it installs; and those that take a value.
COSMETIC = {"--quiet", "-q", "--no-cache-dir"}
WITH_VALUE = {"--wheel-dir", "-w"}


def _commands(text: str) -> list[list[str]]:
    """Each simple command of a shell script or of a Dockerfile's RUN lines, as words."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(re.sub(r"^\s*RUN\s+", "", line), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token and set(token) <= set(lexer.punctuation_chars):  # && ; | ( ) ...
                if words:
                    commands.append(words)
                words = []
            else:
                words.append(token)
    return commands


def _pip(text: str) -> dict[str, list[tuple[set[str], list[str]]]]:
    """pip verb -> [(options that matter, positional arguments)] for every pip command."""
    found: dict[str, list[tuple[set[str], list[str]]]] = {}
    for words in _commands(text):
        if "pip" in words and words[words.index("pip") - 1] == "-m":
            at = words.index("pip")
        elif any(Path(w).name in ("pip", "pip3") for w in words[:1]):
            at = 0
        else:
            continue
        verb, rest = words[at + 1], words[at + 2:]
        options, positional, skip = set(), [], False
        for word in rest:
            if skip:
                skip = False
            elif word in WITH_VALUE:
                skip = True
            elif word.startswith("-"):
                if word.split("=")[0] not in COSMETIC | WITH_VALUE:
                    options.add(word)
            else:
                positional.append(word)
        found.setdefault(verb, []).append((options, positional))
    return found


def _dockerfile_build_sources() -> set[str]:
    """What the build stage copies from the context."""
    stages = re.split(r"(?m)^FROM\s", DOCKERFILE.read_text())
    sources: set[str] = set()
    for line in stages[1].splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources.update(shlex.split(line)[1:-1])
    return sources


def test_the_image_and_ci_install_the_same_wheel_without_extras() -> None:
    """One ``pip wheel --no-deps`` of the project and one ``pip install`` of that wheel, no
    extras and nothing else, in both."""
    docker, ci = _pip(DOCKERFILE.read_text()), _pip(USER_INSTALL.read_text())
    for where, pip in (("docker/Dockerfile", docker), (".ci/user-install", ci)):
        assert set(pip) == {"wheel", "install"}, f"{where}: pip {sorted(pip)}"
        assert pip["wheel"] == [({"--no-deps"}, ["."])], f"{where}: {pip['wheel']}"
        [(options, targets)] = pip["install"]
        assert not options, f"{where}: pip install {options}"
        assert [Path(t).name for t in targets] == ["credential_orchestrator-*.whl"], (
            f"{where}: pip install {targets}: the project's wheel alone, without extras")


def test_the_image_and_ci_build_from_the_same_sources() -> None:
    match = re.search(r"SOURCES=\(([^)]*)\)", USER_INSTALL.read_text())
    assert match, ".ci/user-install names its SOURCES=(...)"
    assert {s.rstrip("/") for s in _dockerfile_build_sources()} == set(match.group(1).split())


def test_the_image_installs_nothing_else() -> None:
    """No package manager besides the one pip install of the wheel."""
    for words in _commands(DOCKERFILE.read_text()):
        assert not {"apt-get", "apt", "apk", "pipx", "uv", "conda"} & set(words), words


def test_compose_replicas_share_one_keystore_and_one_delivery_volume() -> None:
    """init and every daemon replica mount the same named volumes at the keystore and delivery
    paths they are configured with, so a file delivered by one replica is the one the
    applications read, whichever replica leads."""
    compose = yaml.safe_load(COMPOSE.read_text())
    for service in ("init", "daemon"):
        spec = compose["services"][service]
        environment = spec["environment"]
        mounts = {m.split(":")[1]: m.split(":")[0] for m in spec["volumes"]}
        for variable, volume in (("ORCHESTRATOR_KEYSTORE", "keystore"),
                                 ("ORCHESTRATOR_DELIVERY", "delivery")):
            path = environment[variable]
            assert mounts.get(path) == volume, f"{service}: {variable}={path} is not on {volume}"
            assert volume in compose["volumes"], f"volume {volume} is not declared"


def _instruction(name: str) -> list[str]:
    """The exec form (a JSON array) of the Dockerfile's last ``name`` instruction, or of the
    ``CMD`` inside its ``HEALTHCHECK``."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = re.findall(rf"(?m)^{name}\s+(?:--\S+\s+)*(?:CMD\s+)?(\[.*\])\s*$", text)
    assert found, f"docker/Dockerfile has no {name} in exec form"
    words: list[str] = json.loads(found[-1])
    return words


def _listen_port(command: list[str]) -> tuple[str, int]:
    address = command[command.index("--listen") + 1]
    host, _, port = address.rpartition(":")
    return host, int(port)


def test_the_image_checks_health_with_its_own_python_on_the_port_the_daemon_listens_on() -> None:
    """HEALTHCHECK asks /healthz through the image's Python (the slim image has no curl), on the
    port CMD's daemon listens on, on every interface (so Prometheus can scrape it too), and the
    compose file's daemon command, which replaces CMD, listens there as well."""
    check = _instruction("HEALTHCHECK")
    assert check[:2] == ["python", "-c"] and "curl" not in check and "wget" not in check, check
    url = re.search(r"http://127\.0\.0\.1:(\d+)/healthz", check[2])
    assert url and "urllib.request" in check[2], check
    command = _instruction("CMD")
    assert command[0] == "daemon", command
    assert _listen_port(command) == ("0.0.0.0", int(url.group(1)))
    assert f"EXPOSE {url.group(1)}" in DOCKERFILE.read_text()
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["daemon"]["command"]
    assert _listen_port(compose) == ("0.0.0.0", int(url.group(1))), compose
