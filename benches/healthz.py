"""The readiness probe of the start-up scripts (startup.py, startup_order.py)."""
import socket


def healthz_ok(port, timeout):
    """Whether shopd on 127.0.0.1:`port` answers GET /healthz with 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
