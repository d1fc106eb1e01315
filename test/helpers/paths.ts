import { fileURLToPath } from 'node:url';

/** The repository root (tests run compiled from dist/test/...). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const BIN = `${ROOT}bin/multiplexer.js`;

export function fixture(name: string): string {
  return `${ROOT}test/fixtures/${name}`;
}

/** A token placed in backend command lines so a test can find its own processes in /proc. */
export function uniqueMarker(): string {
  return `mpxtest-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}
