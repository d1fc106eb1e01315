import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';

/**
 * What can be told about service_start_process_cmd before it runs: the directory it runs in, and
 * whether it can learn its port at all.
 */

/** The words of a command line that may name files: quotes and shell operators taken off. */
function words(command: string): string[] {
  return command
    .split(/\s+/)
    .map((w) => w.replace(/^['"]+|['"]+$/g, '').replace(/[;&|]+$/, ''))
    .filter((w) => w !== '' && !w.startsWith('-') && !w.includes('%PORT%') && !w.includes('$'));
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export interface ServiceDir {
  /** Absolute. */
  readonly dir: string;
  /** Set when an unset service_cwd kept the start directory, to say so at start. */
  readonly note?: string;
}

/**
 * service_cwd as a directory. Set: taken from the config file's directory ("" is that directory).
 * Unset: the config file's directory, unless the command names a relative path that exists from
 * the directory start runs in and not from the config file's: a config written before service_cwd
 * existed counted on the start directory, and keeps it (with a note saying how to stop relying on it).
 */
export function serviceDir(input: {
  readonly value: string;
  readonly given: boolean;
  readonly configFile: string;
  readonly command: string;
  readonly startDir: string;
}): ServiceDir {
  const configDir = dirname(input.configFile);
  if (input.given) return { dir: resolve(configDir, input.value) };
  if (input.startDir !== configDir) {
    const only = words(input.command).find(
      (w) =>
        !isAbsolute(w) &&
        existsSync(resolve(input.startDir, w)) &&
        !existsSync(resolve(configDir, w)),
    );
    if (only !== undefined) {
      return {
        dir: input.startDir,
        note: `service_cwd is not set: the command runs in the directory where start ran, ${input.startDir}, because ${JSON.stringify(only)} exists only from there (not from the config file's directory, ${configDir}); set "service_cwd" (relative to the config file) to make this config work from any directory`,
      };
    }
  }
  return { dir: configDir };
}

/**
 * Why the command may never learn its port, or undefined: it has no %PORT%, no $PORT, and none of
 * the files it names (a script) mentions PORT. A backend that listens elsewhere is never ready.
 */
export function portProblem(command: string, dir: string): string | undefined {
  if (command.includes('%PORT%') || /\$\{?PORT\b/.test(command)) return undefined;
  const scripts = words(command)
    .map((w) => resolve(dir, w))
    .filter(isFile);
  const readsPort = scripts.some((file) => {
    try {
      return /PORT/.test(readFileSync(file, 'utf8').slice(0, 1_000_000));
    } catch {
      return false;
    }
  });
  if (readsPort) return undefined;
  const looked = scripts.length > 0 ? ` (nor does ${scripts.join(', ')} mention PORT)` : '';
  return `service_start_process_cmd ${JSON.stringify(command)} has no %PORT% and does not read $PORT${looked}: each backend must listen on the port multiplexer gives it, or it never counts as ready`;
}

/**
 * A path in the command that does not exist from where it runs (a config copied elsewhere, a
 * service_cwd that points past the app): said at start and by check, before the first start fails.
 */
export function missingPathProblem(command: string, dir: string): string | undefined {
  const missing = words(command).find(
    (w) => w.includes('/') && !w.includes('://') && !isAbsolute(w) && !existsSync(resolve(dir, w)),
  );
  if (missing === undefined) return undefined;
  return `service_start_process_cmd names ${JSON.stringify(missing)}, which does not exist from service_cwd ${dir} (service_cwd is relative to the config file's directory)`;
}
