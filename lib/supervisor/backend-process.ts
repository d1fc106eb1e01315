import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import type { Logger } from '../log.js';
import { checkHealth } from './health.js';
import { groupHasLiveMembers } from './process-table.js';

export interface BackendSpec {
  readonly id: number;
  /** Where it is reached: the host of service_http_base_url. */
  readonly host: string;
  readonly port: number;
  /** The operator's command line; every %PORT% is replaced by the port. */
  readonly command: string;
  /** service_cwd, resolved: where the command runs. */
  readonly cwd: string;
  /** What must happen before its port is probed: a first stdout line, a delay, or nothing. */
  readonly readiness: number | 'wait_first_output' | 'wait_port';
  /** service_health_path: once its port accepts, GET this must answer 2xx/3xx ("" = no check). */
  readonly healthPath: string;
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
  /**
   * Waiting for a first stdout line, its port has accepted connections for a while and no line
   * came: the line is most likely stuck in the service's output buffer.
   */
  onSilentListener?(): void;
}

const MAX_LINE = 64 * 1024;
/** No event tells when the last member of a process group ends; it is polled. */
const GROUP_POLL_MS = 25;
/** How often a port that refused is tried again while a backend starts. */
const PORT_POLL_MS = 20;
/** How often a failing health check is tried again while a backend starts. */
const HEALTH_RETRY_MS = 100;
/** Output lines kept to show why a backend could not start. */
const TAIL_LINES = 20;
/** How often the port is tried while a first stdout line is awaited (to diagnose, not to decide). */
const SILENT_POLL_MS = 100;
/**
 * How long a port may accept with no stdout line before that is said: a service prints its line
 * a moment after it listens, well within this.
 */
const SILENT_GRACE_MS = 1000;

/**
 * A backend's environment: ours, without multiplexer's own variables (MULTIPLEXER_ADMIN_TOKEN
 * among them, and the front workers' config), plus PORT. The app, its crash reporter and its
 * environment dumps never see the admin token.
 */
export function backendEnvironment(env: NodeJS.ProcessEnv, port: number): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('MULTIPLEXER_')) out[name] = value;
  }
  out.PORT = String(port);
  return out;
}

/** What a backend wrote and did while starting: said when it is given up on. */
export interface StartReport {
  readonly stdoutLines: number;
  readonly stderrLines: number;
  /** The readiness trigger (first stdout line or delay) happened; the port is being probed. */
  readonly probing: boolean;
  /** Waiting for a first stdout line, its port accepted connections meanwhile. */
  readonly acceptedWithoutLine: boolean;
  /** Why the last health check failed, when its port accepted but its health path did not pass. */
  readonly health: string | undefined;
  /** The last lines it wrote, on either stream, oldest first. */
  readonly tail: readonly string[];
}

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
  private probeTimer: NodeJS.Timeout | undefined;
  private probeSocket: net.Socket | undefined;
  private probing = false;
  private silentTimer: NodeJS.Timeout | undefined;
  private acceptedWithoutLine = false;
  /** Why its last health check at start failed, if it did. */
  private lastHealth: string | undefined;
  private readonly lines = { stdout: 0, stderr: 0 };
  private readonly tail: string[] = [];

  constructor(
    readonly spec: BackendSpec,
    private readonly log: Logger,
    private readonly callbacks: BackendCallbacks,
  ) {
    this.command = spec.command.replaceAll('%PORT%', String(spec.port));
    this.child = spawn('/bin/sh', ['-c', this.command], {
      detached: true,
      cwd: spec.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: backendEnvironment(process.env, spec.port),
    });
    this.pid = this.child.pid;
    this.child.once('error', (err) =>
      this.handleExit({ code: null, signal: null, error: err.message }),
    );
    this.child.once('exit', (code, signal) => this.handleExit({ code, signal }));
    this.pipeToLog(this.child.stdout!, 'stdout');
    this.pipeToLog(this.child.stderr!, 'stderr');
    if (spec.readiness === 'wait_first_output') {
      this.child.stdout!.once('data', () => {
        this.stopSilentWatch();
        this.probePort();
      });
      this.silentTimer = setTimeout(() => this.watchSilentPort(), SILENT_POLL_MS);
    } else if (spec.readiness === 'wait_port') {
      this.probePort();
    } else {
      this.delayTimer = setTimeout(() => this.probePort(), spec.readiness);
    }
  }

  /**
   * Ready means its port accepts a connection: a first stdout line or a delay only says when to
   * start looking (a service may print a banner long before it listens). Also called when a
   * ready backend refused a connection: it is not ready until its port accepts again.
   */
  probePort(): void {
    if (this.leaderExit || this.exited || this.terminating) return;
    this.ready = false;
    this.probing = true;
    clearTimeout(this.probeTimer);
    this.probeSocket?.destroy();
    const socket = net.connect({ host: this.spec.host, port: this.spec.port });
    this.probeSocket = socket;
    socket.once('connect', () => {
      socket.destroy();
      if (this.spec.healthPath === '') return this.markReady();
      void checkHealth(this.spec.host, this.spec.port, this.spec.healthPath).then((result) => {
        this.lastHealth = result.healthy ? undefined : result.reason;
        if (result.healthy) this.markReady();
        else if (!this.leaderExit && !this.terminating) {
          this.probeTimer = setTimeout(() => this.probePort(), HEALTH_RETRY_MS);
        }
      });
    });
    socket.once('error', () => {
      socket.destroy();
      this.probeTimer = setTimeout(() => this.probePort(), PORT_POLL_MS);
    });
  }

  /**
   * While a first stdout line is awaited, the port is tried too, only to tell a service that
   * listens but whose line sits in its output buffer (Python, Perl, C with stdout on a pipe)
   * from one that does not listen: the line still decides readiness.
   */
  private watchSilentPort(): void {
    if (this.probing || this.leaderExit || this.terminating) return;
    const socket = net.connect({ host: this.spec.host, port: this.spec.port });
    const again = (ms: number, then: () => void): void => {
      socket.destroy();
      if (this.probing || this.leaderExit || this.terminating) return;
      this.silentTimer = setTimeout(then, ms);
    };
    socket.once('connect', () =>
      again(SILENT_GRACE_MS, () => {
        this.acceptedWithoutLine = true;
        this.callbacks.onSilentListener?.();
      }),
    );
    socket.once('error', () => again(SILENT_POLL_MS, () => this.watchSilentPort()));
  }

  private stopSilentWatch(): void {
    clearTimeout(this.silentTimer);
    this.silentTimer = undefined;
  }

  /** What it did while starting, to say why it was given up on. */
  startReport(): StartReport {
    return {
      stdoutLines: this.lines.stdout,
      stderrLines: this.lines.stderr,
      probing: this.probing,
      acceptedWithoutLine: this.acceptedWithoutLine && this.lines.stdout === 0,
      health: this.lastHealth,
      tail: [...this.tail],
    };
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
    this.stopProbing();
    this.stopSilentWatch();
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
    // Once the leader is gone, a child still draining does not make it ready.
    if (this.ready || this.leaderExit || this.terminating) return;
    this.ready = true;
    this.callbacks.onReady();
  }

  private stopProbing(): void {
    clearTimeout(this.probeTimer);
    this.probeSocket?.destroy();
    this.probeSocket = undefined;
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
    this.stopProbing();
    this.stopSilentWatch();
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
    // The group is gone, but its last output may still be in the pipes ("command not found"):
    // read it first, so the exit report and a boot failure show it. Bounded, in case something
    // outside the group holds a pipe open.
    const streams = [this.child.stdout!, this.child.stderr!].filter((s) => !s.readableEnded);
    let reported = false;
    const report = (): void => {
      if (reported) return;
      reported = true;
      clearTimeout(bound);
      this.callbacks.onExit(this.leaderExit!);
    };
    const bound = setTimeout(report, 200);
    let open = streams.length;
    if (open === 0) return report();
    for (const stream of streams) {
      stream.once('close', () => {
        if (--open === 0) report();
      });
    }
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
        this.line(tags, pending.slice(0, newline).replace(/\r$/, ''));
        pending = pending.slice(newline + 1);
      }
      if (pending.length > MAX_LINE) {
        this.line(tags, pending);
        pending = '';
      }
    });
    stream.on('end', () => {
      if (pending !== '') this.line(tags, pending);
    });
  }

  private line(tags: { stream: 'stdout' | 'stderr' }, text: string): void {
    this.lines[tags.stream] += 1;
    this.tail.push(`${tags.stream}: ${text.slice(0, 500)}`);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
    this.log.info({ event: 'backend.output', ...tags }, text);
  }
}
