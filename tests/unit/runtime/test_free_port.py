"""`free_port` hands out ports an outgoing connection can never take first."""

from __future__ import annotations

import socket

from app.sampler.launcher import _ephemeral_low, free_port


def test_ports_come_from_below_the_ephemeral_range_and_are_free() -> None:
    low = _ephemeral_low()
    ports = [free_port() for _ in range(50)]
    # bind(0) would hand out ports from the ephemeral range, which the kernel also gives to
    # outgoing connections while a server is still starting.
    assert all(1024 <= p < low for p in ports), (low, ports)
    assert len(set(ports)) > 40  # drawn at random: two callers at once rarely collide
    for port in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_taken_port_is_not_handed_out() -> None:
    held = []
    try:
        for _ in range(20):
            s = socket.socket()
            s.bind(("127.0.0.1", free_port()))
            s.listen()
            held.append(s)
        taken = {s.getsockname()[1] for s in held}
        assert all(free_port() not in taken for _ in range(200))
    finally:
        for s in held:
            s.close()
