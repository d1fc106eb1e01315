#!/usr/bin/env python3
"""Slow clients for the slow-clients benchmark scenario.

Each client asks for PATH over and over on one kept-alive connection and reads every answer at a
capped rate, as a phone on a slow network does. The receive buffer is set small before connecting
(SO_RCVBUF): with Linux's default buffers on loopback, a 256 KiB answer fits whole in the kernel's
socket buffers, so the sender would never feel the slow reader and the scenario would measure
nothing. Node cannot set SO_RCVBUF on a TCP socket, hence Python.

Usage: slow-clients.py PORT COUNT BYTES_PER_SECOND PATH
Runs until its standard input closes, then prints {"answers": N, "errors": N} and exits.
"""
import json
import socket
import sys
import threading
import time

port, count, rate, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
stop = threading.Event()
lock = threading.Lock()
totals = {"answers": 0, "errors": 0}
RCVBUF = 8192
BURST = 16 * 1024


def count_one(key):
    with lock:
        totals[key] += 1


def client():
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.settimeout(60)
        sock.connect(("127.0.0.1", port))
    except OSError:
        count_one("errors")
        return
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    tokens, last = BURST, time.monotonic()
    pending = b""
    while not stop.is_set():
        try:
            sock.sendall(request)
            head = pending
            while b"\r\n\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    raise OSError("closed")
                head += data
            head, _, body = head.partition(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            left = length - len(body)
            pending = body[length:] if left < 0 else b""
            while left > 0 and not stop.is_set():
                # A token bucket: at most BURST bytes ahead of the rate.
                now = time.monotonic()
                tokens = min(BURST, tokens + (now - last) * rate)
                last = now
                if tokens < 4096:
                    time.sleep((4096 - tokens) / rate)
                    continue
                data = sock.recv(min(4096, left))
                if not data:
                    raise OSError("closed")
                tokens -= len(data)
                left -= len(data)
            if left <= 0:
                count_one("answers" if status == 200 else "errors")
        except OSError:
            if not stop.is_set():
                count_one("errors")
            return
    sock.close()


threads = [threading.Thread(target=client, daemon=True) for _ in range(count)]
for t in threads:
    t.start()
sys.stdin.read()
stop.set()
print(json.dumps(totals), flush=True)
