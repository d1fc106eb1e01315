import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../log.js';
import { groupHasLiveMembers } from './process-table.js';

export interface BackendSpec {
  readonly id: number;
  readonly port: number;
  /** The operator's command line; every %PORT% is replaced by the port. */
  readonly command: string;
  readonly readiness: number | 'wait_first_output';
  /** service_stop_timeout_ms: grace between SIGTERM and SIGKILL. */
  readonly stopGraceMs: number;
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all. */
  readonly error?: string;
  /** True when multiplexer had signalled it to stop before it exited; false for a crash. */
  readonly stopped: boolean;
}

export interface BackendCallbacks {
  onReady(): void;
  onExit(info: ExitInfo): void;
}

const MAX_LINE = 64 * 1024;
/** No event tells when the last member of a process group ends; it is polled. */
const GROUP_POLL_MS = 25;

/**
 * One backend process. The command runs through /bin/sh so the original tool's command strings
 * work, but in a process group of its own (detached), so every signal reaches the shell and all
 * it started, and a Ctrl-C at multiplexer's terminal does not hit the backends directly.
 * Its output is read for as long as it lives, so a chatty backend never blocks on a full pipe.
 */
export class BackendProcess {
  readonly pid: number | undefined;
  /** The command line as run, %PORT% replaced. */
  readonly command: string;
  private readonly child: ChildProcess;
  private exited = false;
  private ready = false;
  private killTimer: NodeJS.Timeout | undefined;
  private termTimer: NodeJS.Timeout | undefined;
  private groupPoll: NodeJS.Timeout | undefined;
  private terminating = false;
  private leaderExit: ExitInfo | undefined;
  private delayTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly spec: BackendSpec,
    private readonly log: Logger,
    private readonly callbacks: BackendCallbacks,
  ) {
    this.command = spec.command.replaceAll('%PORT%', String(spec.port));
    this.child = spawn('/bin/sh', ['-c', this.command], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PORT: String(spec.port) },
    });
    this.pid = this.child.pid;
    this.child.once('error', (err) =>
      this.handleExit({ code: null, signal: null, error: err.message }),
    );
    this.child.once('exit', (code, signal) => this.handleExit({ code, signal }));
    this.pipeToLog(this.child.stdout!, 'stdout');
    this.pipeToLog(this.child.stderr!, 'stderr');
    if (spec.readiness === 'wait_first_output') {
      this.child.stdout!.once('data', () => this.markReady());
    } else {
      this.delayTimer = setTimeout(() => this.markReady(), spec.readiness);
    }
  }

  /**
   * SIGTERM to the whole group, SIGKILL after the grace if anything of it is still there. With
   * `delayMs`, the process first gets that long to exit on its own (a backend whose connection just
   * broke is usually dying, and its own exit status says why better than our SIGTERM would).
   */
  stop(delayMs = 0): void {
    if (this.exited) return;
    if (delayMs > 0) {
      this.termTimer ??= setTimeout(() => this.stop(), delayMs);
      return;
    }
    if (this.terminating) return;
    this.terminating = true;
    this.signal('SIGTERM');
    this.killTimer = setTimeout(() => this.signal('SIGKILL'), this.spec.stopGraceMs);
  }

  /** Synchronous last resort, for an exit path with no event loop left. */
  killNow(): void {
    if (!this.exited) this.signal('SIGKILL');
  }

  private signal(signal: NodeJS.Signals): void {
    if (this.pid === undefined) return;
    try {
      process.kill(-this.pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }

  private markReady(): void {
    // Once the leader is gone, output from a child still draining does not make it ready.
    if (this.ready || this.leaderExit) return;
    this.ready = true;
    this.callbacks.onReady();
  }

  /**
   * The group leader (the shell running the command) is gone. Anything it started may still run in
   * its group, e.g. the service of "cd app && python server.py" while it shuts down gracefully: the
   * group gets the same SIGTERM, grace, SIGKILL as a stop, and the exit is reported only once the
   * group is empty, so the port and every process are really free. The group id stays reserved
   * while members remain, so these signals cannot reach an unrelated process.
   */
  private handleExit(info: Omit<ExitInfo, 'stopped'>): void {
    if (this.exited || this.leaderExit) return;
    this.leaderExit = { ...info, stopped: this.terminating };
    clearTimeout(this.delayTimer);
    clearTimeout(this.termTimer);
    if (!this.groupAlive()) return this.reportExit();
    this.stop();
    this.groupPoll = setInterval(() => {
      if (!this.groupAlive()) this.reportExit();
    }, GROUP_POLL_MS);
  }

  private reportExit(): void {
    if (this.exited) return;
    this.exited = true;
    clearTimeout(this.killTimer);
    clearInterval(this.groupPoll);
    this.callbacks.onExit(this.leaderExit!);
  }

  private groupAlive(): boolean {
    return this.pid !== undefined && groupHasLiveMembers(this.pid);
  }

  private pipeToLog(stream: NodeJS.ReadableStream, name: 'stdout' | 'stderr'): void {
    const tags = { backend: this.spec.id, port: this.spec.port, stream: name };
    let pending = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      pending += chunk;
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        this.log.info(tags, pending.slice(0, newline).replace(/\r$/, ''));
        pending = pending.slice(newline + 1);
      }
      if (pending.length > MAX_LINE) {
        this.log.info(tags, pending);
        pending = '';
      }
    });
    stream.on('end', () => {
      if (pending !== '') this.log.info(tags, pending);
    });
  }
}
