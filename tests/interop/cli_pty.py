#!/usr/bin/env python3
"""Drives `zabd cli` interactively through a pseudo-terminal, as a person would: the
prompt, a create, a get, the up arrow recalling the last command, quit. Exit 0 when all
of it was seen. Usage: cli_pty.py ZABD_BIN HOST:PORT HOME_DIR"""
import os, pty, select, sys, time

zabd, addr, home = sys.argv[1:4]
pid, fd = pty.fork()
if pid == 0:
    os.environ["HOME"] = home
    os.execv(zabd, [zabd, "cli", addr])

buf = b""
def expect(what, timeout=60):
    global buf
    end = time.time() + timeout
    while what.encode() not in buf:
        left = end - time.time()
        if left <= 0:
            sys.exit(f"did not see {what!r}; saw {buf.decode(errors='replace')!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                sys.exit(f"the shell ended before {what!r}; saw {buf.decode(errors='replace')!r}")
            buf += chunk
    i = buf.index(what.encode()) + len(what)
    buf = buf[i:]

expect("[zk: ")
os.write(fd, b"create /pty hello-pty\r")
expect("Created /pty")
expect("[zk: ")
os.write(fd, b"get /pty\r")
expect("hello-pty")
expect("[zk: ")
os.write(fd, b"\x1b[A\r")          # the up arrow: the last command again
expect("get /pty")
expect("hello-pty")
expect("[zk: ")
os.write(fd, b"quit\r")
_, status = os.waitpid(pid, 0)
if os.WEXITSTATUS(status) != 0:
    sys.exit(f"exit status {status}")
hist = open(os.path.join(home, ".zabd_history")).read()
if "create /pty hello-pty" not in hist:
    sys.exit(f"history file: {hist!r}")
print("cli through a pty: ok")
