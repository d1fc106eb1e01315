"""A Flask app served by gunicorn with one sync worker: one request at a time per process.

Run by multiplexer as:  .venv/bin/gunicorn --chdir examples/python-flask-gunicorn -w 1 -b 127.0.0.1:%PORT% app:app

gunicorn's sync worker answers one connection, then takes the next from its listen queue. Behind
multiplexer nothing waits in that queue, because a backend gets nothing until its last answer is
complete. Each page says whether a connection was already waiting ("queued_behind"), which would
show that guarantee broken; multiplexer's tests check it is always false.
"""

import hashlib
import os
import select
import socket
import time

from flask import Flask, request

app = Flask(__name__)


def listening_socket():
    """The socket this process accepts on (gunicorn's listener, inherited by its worker)."""
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # not a socket
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return sock
        sock.close()
    return None


@app.get("/healthz")
def healthz():
    return {"ok": True}


@app.get("/", defaults={"path": ""})
@app.get("/<path:path>")
def page(path):
    started = time.time()
    # Work done in this process, holding it the way single-threaded code does.
    digest = b"multiplexer"
    for _ in range(20000):
        digest = hashlib.sha256(digest).digest()
    listener = listening_socket()
    queued_behind = bool(listener and select.select([listener], [], [], 0)[0])
    if listener:
        listener.close()
    return {
        "pid": os.getpid(),
        "port": int(request.environ["SERVER_PORT"]),
        "path": request.full_path.rstrip("?"),
        "digest": digest.hex()[:16],
        "ms": round((time.time() - started) * 1000, 1),
        "queued_behind": queued_behind,
    }
