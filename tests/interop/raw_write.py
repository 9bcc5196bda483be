#!/usr/bin/env python3
"""A ZooKeeper client on a bare socket, for constructing faults: it opens a session on
HOST:PORT, prints "ready", waits for a line on stdin, then sends create(PATH) and does not
wait for the answer (the server may never give one). It exits after a second.

Usage: raw_write.py HOST:PORT PATH
"""
import socket
import struct
import sys
import time


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def string(s):
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def read_frame(sock):
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            raise SystemExit("the server closed the connection during the handshake")
        head += chunk
    (n,) = struct.unpack(">i", head)
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            raise SystemExit("the server closed the connection during the handshake")
        body += chunk
    return body


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    path = sys.argv[2]
    sock = socket.create_connection((host, int(port)), timeout=30)
    # ConnectRequest: protocolVersion, lastZxidSeen, timeOut, sessionId, passwd.
    connect = struct.pack(">iqiq", 0, 0, 30000, 0) + struct.pack(">i", 16) + bytes(16)
    sock.sendall(frame(connect))
    read_frame(sock)
    print("ready", flush=True)
    sys.stdin.readline()
    # create: header (xid, type 1), path, data, ACL [world:anyone, ALL], flags.
    create = struct.pack(">ii", 1, 1) + string(path) + struct.pack(">i", 1) + b"x"
    create += struct.pack(">ii", 1, 31) + string("world") + string("anyone")
    create += struct.pack(">i", 0)
    sock.sendall(frame(create))
    print("sent", flush=True)
    time.sleep(1)


if __name__ == "__main__":
    main()
