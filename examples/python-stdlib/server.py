"""The smallest service multiplexer is for: Python's standard library only, one request at a time.

Usage: python3 server.py PORT

http.server's HTTPServer (not ThreadingHTTPServer) handles one connection, then the next: while a
request is being answered, others wait. Behind multiplexer they never wait here, because it sends a
backend nothing until its last answer is complete. Each answer says whether another connection was
already waiting in this server's listen queue ("queued_behind"), which would show that guarantee
broken; multiplexer's tests check it is always false.
"""

import hashlib
import json
import os
import select
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, the connection closes after each answer.
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        if self.path == "/healthz":
            return self.reply(200, {"ok": True})
        started = time.time()
        # Work done in this process, holding it the way single-threaded code does.
        digest = b"multiplexer"
        for _ in range(20000):
            digest = hashlib.sha256(digest).digest()
        queued_behind = bool(select.select([self.server.socket], [], [], 0)[0])
        self.reply(200, {
            "pid": os.getpid(),
            "port": self.server.server_address[1],
            "path": self.path,
            "digest": digest.hex()[:16],
            "ms": round((time.time() - started) * 1000, 1),
            "queued_behind": queued_behind,
        })

    def reply(self, status, body):
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        # One line per request on stderr, as http.server does, without the client address
        # (always multiplexer's) and the date (the log has its own).
        sys.stderr.write("%s\n" % (format % args))


def main():
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ["PORT"])
    server = HTTPServer(("127.0.0.1", port), Handler)

    # SIGTERM (multiplexer stopping or retiring this backend) lets the request in hand finish,
    # then the loop ends: Python's default for SIGTERM would end the process mid-answer.
    running = True

    def stop(signum, frame):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    # The first line on stdout tells multiplexer the port is bound (wait_first_output). flush:
    # stdout is a pipe, so Python would otherwise hold the line in its buffer.
    print(f"python-stdlib example listening on {port}", flush=True)
    server.timeout = 0.25  # how often the loop looks at `running` while idle
    while running:
        server.handle_request()
    server.server_close()


if __name__ == "__main__":
    main()
