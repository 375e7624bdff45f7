"""``daemon --listen``'s address: what each form means, and each refusal in one sentence."""

from __future__ import annotations

import click
import pytest

from orchestrator.entrypoints.cli.params import ListenAddress


@pytest.mark.parametrize(("given", "meant"), [
    ("9464", ("127.0.0.1", 9464)),  # a bare port: this host only
    ("0.0.0.0:9464", ("0.0.0.0", 9464)),  # every interface (the container image)
    ("localhost:9100", ("localhost", 9100)),
    ("[::1]:9464", ("::1", 9464)),
    ("[::]:9464", ("::", 9464)),
    (" 9464 ", ("127.0.0.1", 9464)),
    ("127.0.0.1:0", ("127.0.0.1", 0)),  # the system chooses (the log line says which)
])
def test_each_form_names_an_address_and_a_port(given: str, meant: tuple[str, int]) -> None:
    assert ListenAddress().convert(given, None, None) == meant


@pytest.mark.parametrize(("given", "why"), [
    ("", "the port must be a number"),
    ("http", "the port must be a number"),
    ("127.0.0.1:65536", "from 0 to 65535"),
    ("127.0.0.1:-1", "the port must be a number"),
    (":9464", "names no address"),
    ("::1:9464", "IPv6 address in brackets"),
])
def test_an_unusable_address_is_refused_saying_why(given: str, why: str) -> None:
    with pytest.raises(click.BadParameter, match=why):
        ListenAddress().convert(given, None, None)
