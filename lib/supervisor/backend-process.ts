import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../log.js';

export interface BackendSpec {
  readonly id: number;
  readonly port: number;
  /** The operator's command line; every %PORT% is replaced by the port. */
  readonly command: string;
  readonly readiness: number | 'wait_first_output';
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all. */
  readonly error?: string;
}

export interface BackendCallbacks {
  onReady(): void;
  onExit(info: ExitInfo): void;
}

const MAX_LINE = 64 * 1024;

/**
 * One backend process. The command runs through /bin/sh so the original tool's command strings
 * work, but in a process group of its own (detached), so every signal reaches the shell and all
 * it started, and a Ctrl-C at multiplexer's terminal does not hit the backends directly.
 * Its output is read for as long as it lives, so a chatty backend never blocks on a full pipe.
 */
export class BackendProcess {
  readonly pid: number | undefined;
  private readonly child: ChildProcess;
  private exited = false;
  private ready = false;
  private killTimer: NodeJS.Timeout | undefined;
  private termTimer: NodeJS.Timeout | undefined;
  private delayTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly spec: BackendSpec,
    private readonly log: Logger,
    private readonly callbacks: BackendCallbacks,
  ) {
    const command = spec.command.replaceAll('%PORT%', String(spec.port));
    this.child = spawn('/bin/sh', ['-c', command], {
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

  get isAlive(): boolean {
    return !this.exited;
  }

  /**
   * SIGTERM to the whole group, SIGKILL after `graceMs` if it is still there. With `delayMs`, the
   * process first gets that long to exit on its own (a backend whose connection just broke is
   * usually dying, and its own exit status says why better than our SIGTERM would).
   */
  stop(graceMs: number, delayMs = 0): void {
    if (this.exited) return;
    if (delayMs > 0) {
      this.termTimer ??= setTimeout(() => this.stop(graceMs), delayMs);
      return;
    }
    this.signal('SIGTERM');
    this.killTimer ??= setTimeout(() => this.signal('SIGKILL'), graceMs);
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
    if (this.ready || this.exited) return;
    this.ready = true;
    this.callbacks.onReady();
  }

  private handleExit(info: ExitInfo): void {
    if (this.exited) return;
    this.exited = true;
    clearTimeout(this.killTimer);
    clearTimeout(this.termTimer);
    clearTimeout(this.delayTimer);
    // The group leader is gone; anything it left in its group is an orphan of this backend. The
    // group id stays reserved while members remain, so this cannot reach an unrelated process.
    this.signal('SIGKILL');
    this.callbacks.onExit(info);
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
