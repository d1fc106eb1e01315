#!/usr/bin/env -S node --max-semi-space-size=2
// Thin executable: the CLI lives in the compiled lib/ (npm ci builds it through "prepare").
// --max-semi-space-size=2 (MiB): V8 grows the young generation to 3 × 16 MiB while modules load
// and never gives it back; capped, the primary serves at 70-76 MB RSS instead of 85-93 (measured:
// admin on, the trivial load). Every way we start it passes the flag (npm start, the image).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/lib/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('multiplexer: not built yet; run "npm run build" (npm ci does it too)\n');
  process.exit(70);
}
const { run } = await import(entry.href);
process.exit(await run(process.argv.slice(2)));
