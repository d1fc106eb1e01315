import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { MultiplexerError } from '../errors.js';

/** The environment variable that names the state directory (the --state-dir flag wins over it). */
export const STATE_DIR_ENV = 'MULTIPLEXER_STATE_DIR';

/**
 * Where a running instance keeps its pid file, its admin address and the record of its backends.
 * Given explicitly (flag, then environment), or derived from the config file's location, so that
 * `multiplexer status --config conf/app.json` finds the instance started with that file even when
 * the file itself has since become invalid. Runtime state lives under XDG_RUNTIME_DIR (or the
 * temporary directory): it must not outlive a reboot, and a config directory may be read-only.
 */
export function resolveStateDir(input: {
  flag?: string | undefined;
  env?: NodeJS.ProcessEnv;
  configFile: string;
}): string {
  const env = input.env ?? process.env;
  if (input.flag) return resolve(input.flag);
  const fromEnv = env[STATE_DIR_ENV];
  if (fromEnv) return resolve(fromEnv);
  const file = resolve(input.configFile);
  const name = basename(file, extname(file)).replace(/[^\w.-]/g, '_');
  const hash = createHash('sha256').update(file).digest('hex').slice(0, 8);
  return join(stateRoot(env), `${name}-${hash}`);
}

/** This user's directory of derived state directories, one per config file started. */
export function stateRoot(env: NodeJS.ProcessEnv = process.env): string {
  const uid = process.getuid?.() ?? 'user';
  return join(env.XDG_RUNTIME_DIR || tmpdir(), `multiplexer-${uid}`);
}

/**
 * Creates the directory (mode 0700) if needed and checks it and its parent are real directories
 * of ours that nobody else can write to: a directory planted in a shared /tmp by another user, a
 * symlink, or a parent where another user could swap the directory for their own, is refused.
 */
export function ensureStateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw stateDirError(dir, `cannot be created: ${(err as Error).message}`);
  }
  checkOwnDirectory(dir, dir, 'it');
  checkOwnDirectory(dir, dirname(dir), `its parent ${dirname(dir)}`);
}

function checkOwnDirectory(stateDir: string, dir: string, what: string): void {
  const stat = lstatSync(dir);
  if (stat.isSymbolicLink()) throw stateDirError(stateDir, `is refused: ${what} is a symlink`);
  if (!stat.isDirectory()) throw stateDirError(stateDir, `is refused: ${what} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) {
    throw stateDirError(
      stateDir,
      `is refused: ${what} belongs to uid ${stat.uid}, not to this user (uid ${uid})`,
    );
  }
  if ((stat.mode & 0o022) !== 0) {
    throw stateDirError(
      stateDir,
      `is refused: ${what} is writable by ${stat.mode & 0o002 ? 'everyone' : 'its group'} (mode ${(stat.mode & 0o777).toString(8)})`,
    );
  }
}

function stateDirError(dir: string, why: string): MultiplexerError {
  return new MultiplexerError(
    'MPX_STATE_DIR',
    `state directory ${dir} ${why}; choose another with --state-dir or ${STATE_DIR_ENV}`,
  );
}

/** The front workers' directory for request and answer bodies that outgrow memory. */
export function bufferDirOf(stateDir: string): string {
  return join(stateDir, 'buffers');
}

/** Empties (or creates) a directory of ours inside the state directory, private to us (0700). */
export function resetPrivateDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o700 });
}
