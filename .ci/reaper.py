#!/usr/bin/env python3
"""Runs CI's body as a child subreaper, in a session of its own.

The suite starts and kills many process trees on purpose (kill -9 of a primary, backends that
outlive their shell, the watchdog that outlives its primary). Without a subreaper those orphans
are handed to the machine's PID 1, which here is the CI agent itself. With this wrapper they come
back to us and are reaped here, nothing the suite signals by process group can reach the agent's
group, and whatever is still running when the body ends is killed, so CI leaves nothing behind.

A timestamped trace of the run (steps, signals received, orphans reaped, exit) goes to
$MPX_CI_TRACE, so a run cut short can be read afterwards on the same machine.

Usage: reaper.py COMMAND [ARG...]; exits with COMMAND's exit status.
"""
import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
STRAGGLER_GRACE_S = 10

trace_path = os.environ.get("MPX_CI_TRACE", "/dev/null")
trace_file = open(trace_path, "a", buffering=1)


def trace(what):
    trace_file.write(f"{time.strftime('%H:%M:%S')} reaper: {what}\n")


if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    trace(f"prctl failed (errno {ctypes.get_errno()}); running without a subreaper")

body = os.fork()
if body == 0:
    os.setsid()
    os.environ["MPX_CI_REAPER"] = "1"
    os.execvp(sys.argv[1], sys.argv[1:])


def forward(signum, _frame):
    trace(f"received {signal.Signals(signum).name}; forwarding to the body's group")
    try:
        os.killpg(body, signum)
    except ProcessLookupError:
        pass


for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, forward)

def children():
    """Pids whose parent is this process (orphans handed to us included)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid():
            yield int(entry)


trace(f"body pid {body}: {' '.join(sys.argv[1:])}")
status = None
orphans = 0
deadline = None  # set when the body has exited: how long stragglers may take to end
while True:
    try:
        pid, wait_status = os.waitpid(-1, 0 if deadline is None else os.WNOHANG)
    except ChildProcessError:
        break
    if pid == 0:
        if time.monotonic() > deadline:
            stragglers = list(children())
            trace(f"still running after the body: {stragglers}; SIGKILL")
            for straggler in stragglers:
                os.kill(straggler, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.1)
        continue
    if pid == body:
        status = os.waitstatus_to_exitcode(wait_status)
        trace(f"body exited with {status}; {orphans} orphans reaped so far")
        deadline = time.monotonic() + STRAGGLER_GRACE_S
    else:
        orphans += 1

trace(f"done: {orphans} orphans reaped in all; exit {status}")
sys.exit(status if status is not None and status >= 0 else 1)
