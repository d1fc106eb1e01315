#!/usr/bin/env node
// Thin executable: the CLI lives in the compiled lib/ (npm ci builds it through "prepare").
import { existsSync } from 'node:fs';

const entry = new URL('../dist/lib/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('multiplexer: not built yet; run "npm run build" (npm ci does it too)\n');
  process.exit(70);
}
const { run } = await import(entry.href);
process.exit(await run(process.argv.slice(2)));
