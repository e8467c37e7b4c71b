"""The host never dials a lab address: sockets of the default namespace reach loopback only.

The machines that run the lab have their own uplink on a documentation range, so a
connection from the default namespace to a lab address could leave the machine. The test
session (``tests/conftest.py``), ``scripts/lab`` and the benchmarks call
``lab.nsnet.forbid_host_dials``; lab sockets are made inside namespaces
(``lab.nsnet.socket_in``), which the lab tests exercise.
"""

from __future__ import annotations

import socket

import pytest

from lab.nsnet import HostDialError, forbid_host_dials


@pytest.mark.parametrize(
    "address", ["198.51.100.1", "198.18.0.1", "203.0.113.10", "198.19.0.1", "2001:db8::1"]
)
def test_a_host_socket_cannot_dial_a_lab_address(address: str) -> None:
    forbid_host_dials()  # already installed for the session; a second call changes nothing
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        with pytest.raises(HostDialError):
            sock.connect((address, 9))
        with pytest.raises(HostDialError):
            sock.sendto(b"x", (address, 9))
    with (
        socket.socket(family, socket.SOCK_STREAM) as sock,
        pytest.raises(HostDialError, match="default namespace"),
    ):
        sock.connect((address, 9))


def test_loopback_is_how_the_host_reaches_the_lab() -> None:
    forbid_host_dials()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", 9))  # relays listen on loopback
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.connect(("::1", 9))
