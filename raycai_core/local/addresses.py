"""Loopback "pod IPs" (127.0.0.2 ...) and HTTP port pairs for running apps.

As a pod's IP on CML, an app gets a new address at every (re)start: the pool cycles through
127.0.0.2-127.0.255.254 and skips addresses held by running apps. Ports come from a range,
distinct per running app and checked free by binding before use.
"""

from __future__ import annotations

import ipaddress
import socket

_FIRST_IP = int(ipaddress.IPv4Address("127.0.0.2"))
_LAST_IP = int(ipaddress.IPv4Address("127.0.255.254"))


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


class AddressPool:
    def __init__(self, port_range: tuple[int, int], ip_cursor: int = 0, port_cursor: int = 0):
        self.port_range = port_range
        self.ip_cursor = ip_cursor
        self.port_cursor = port_cursor
        self._ips: set[str] = set()
        self._ports: set[int] = set()

    def take_ip(self) -> str:
        span = _LAST_IP - _FIRST_IP + 1
        for step in range(span):
            candidate = _FIRST_IP + (self.ip_cursor + step) % span
            address = str(ipaddress.IPv4Address(candidate))
            if candidate & 0xFF in (0, 255) or address in self._ips:
                continue
            self.ip_cursor = (candidate - _FIRST_IP + 1) % span
            self._ips.add(address)
            return address
        raise RuntimeError("no free loopback address left")

    def take_port(self) -> int:
        low, high = self.port_range
        span = high - low + 1
        for step in range(span):
            port = low + (self.port_cursor + step) % span
            if port in self._ports or not port_is_free(port):
                continue
            self.port_cursor = (port - low + 1) % span
            self._ports.add(port)
            return port
        raise RuntimeError(f"no free port left in {low}-{high}")

    def release(self, ip: str | None, *ports: int | None) -> None:
        self._ips.discard(ip or "")
        for port in ports:
            self._ports.discard(port or 0)
