/**
 * Notices that the process which started multiplexer has exited. `npm start` is `sh -c` under
 * npm: a SIGTERM to npm ends npm and the shell, and without this the primary, re-parented to PID 1
 * (or a subreaper), would serve on with every backend, and block the next start. No signal tells
 * a process its parent died (prctl's PR_SET_PDEATHSIG is not reachable from Node), so the parent
 * id is polled: a change means the parent is gone. A process started by PID 1 (a container's
 * init, systemd) has nothing to watch.
 */
const POLL_MS = 500;

export function watchParent(onGone: (parent: number, now: number) => void): void {
  const parent = process.ppid;
  if (parent <= 1) return;
  const timer = setInterval(() => {
    const now = process.ppid;
    if (now === parent) return;
    clearInterval(timer);
    onGone(parent, now);
  }, POLL_MS);
  timer.unref();
}
