"""The test harness's ports: a system asks for several before it binds any of them."""

from __future__ import annotations

from tests.support.processes import free_port


def test_ports_asked_for_before_any_is_bound_are_all_different() -> None:
    # A system picks its web port, then its sandbox picks an HTTP and an SMTP port, and only
    # then does each server bind: a port handed out twice puts two servers on one port.
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
