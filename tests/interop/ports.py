"""Free loopback ports and four-letter words, for the Python suites."""
import socket


def free_ports(n):
    """`n` distinct ports free on loopback right now."""
    ss = [socket.socket() for _ in range(n)]
    for s in ss:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in ss]
    for s in ss:
        s.close()
    return ports


def word(port, w):
    """The answer to four-letter word `w` on a loopback port ("" when it cannot be had)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.settimeout(5)
        s.sendall(w.encode())
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        return out.decode(errors="replace")
    except OSError:
        return ""


def mode(port):
    """The `Mode:` that `srvr` reports on a loopback port, or None."""
    for line in word(port, "srvr").splitlines():
        if line.startswith("Mode: "):
            return line[6:]
    return None
