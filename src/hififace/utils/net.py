"""Network addresses: which hosts are this machine only (the app and ``hififace live --output http`` warn, or refuse
foreign ``Host`` headers, on the others)."""
from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for an address of this machine only (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
