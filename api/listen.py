"""The listening socket, bound before anything else is done, so a port that is taken (or an address that
is not this machine's) is one clear line and nothing is left behind: no data directory, root key or
credentials made by a server that could never have served."""
from __future__ import annotations

import errno
import socket


class PortUnavailable(Exception):
    pass


def bind_listening_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket as uvicorn would bind it, inheritable by worker processes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailable(f"cannot listen on {where}: the port is already in use (another keyledger, or "
                                  "another program). Stop it, or choose another port with --port or "
                                  "KEYLEDGER_PORT.") from None
        if exc.errno == errno.EACCES:
            raise PortUnavailable(f"cannot listen on {where}: permission denied (ports below 1024 need privileges); "
                                  "choose another with --port or KEYLEDGER_PORT.") from None
        raise PortUnavailable(f"cannot listen on {where}: {exc.strerror or exc} (is {host} an address of this "
                              "machine? set --host or KEYLEDGER_HOST).") from None
    sock.set_inheritable(True)
    return sock
