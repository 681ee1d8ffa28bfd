"""The port picker shared by tests and benches (bench/_common.free_port)."""

from __future__ import annotations

import socket

from tests.conftest import free_port


def test_free_port_never_hands_out_a_port_twice() -> None:
    # The chaos suite's scripted sink asks for 61 ports before anything binds them; picked at random
    # from 12,000 with no memory, two of them were the same about one run in seven.
    ports = [free_port() for _ in range(600)]
    assert len(set(ports)) == len(ports)


def test_free_port_is_free_and_below_the_ephemeral_range() -> None:
    port = free_port()
    assert 20000 <= port < 32000
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # raises if taken
