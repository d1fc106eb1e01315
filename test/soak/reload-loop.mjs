// The reload-under-load tests, N times in a row in one loop, beside the rest of the suite running
// over and over as background load, and (with --hogs) two busy-loop processes hogging the CPU:
// a race that hides on a quiet machine shows here. Not part of `npm test`: run
// `npm run test:soak` (after `npm run build:all`), or `node test/soak/reload-loop.mjs --runs 30 --hogs`.
// Prints one line per run and a summary; exits 1 on the first failure, with its output.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const runs = Number(args[args.indexOf('--runs') + 1] || 30);
const hogs = args.includes('--hogs');

const RELOAD_FILES = ['dist/test/e2e/reloads.test.js', 'dist/test/e2e/operations.test.js'];
const RELOAD_TESTS = 'reload|SIGHUP|killed under load';

const children = new Set();
function start(command, argv, options = {}) {
  const child = spawn(command, argv, { cwd: root, detached: true, ...options });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
function stopAll() {
  for (const child of children) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}
process.on('exit', stopAll);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));
process.on('SIGHUP', () => process.exit(129));

// Background load: the rest of the suite, file after file, for as long as the loop runs.
const others = readdirSync(join(root, 'dist/test/e2e'))
  .filter((f) => f.endsWith('.test.js'))
  .map((f) => `dist/test/e2e/${f}`)
  .filter((f) => !RELOAD_FILES.includes(f));
let background = true;
(async () => {
  while (background) {
    for (const file of others) {
      if (!background) return;
      const child = start(process.execPath, ['--test', file], { stdio: 'ignore' });
      await new Promise((resolve) => child.once('exit', resolve));
    }
  }
})();
if (hogs) {
  // Each busy loop also ends within a second of this process, however it ends (kill -9
  // included): two loops left behind once ran for 90 minutes beside everything else.
  const loop = `yes > /dev/null & y=$!; while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; kill $y`;
  for (let i = 0; i < 2; i++) start('sh', ['-c', loop], { stdio: 'ignore' });
}

const durations = [];
for (let run = 1; run <= runs; run++) {
  const t0 = Date.now();
  const child = start(
    process.execPath,
    ['--test', '--test-concurrency=1', `--test-name-pattern=${RELOAD_TESTS}`, ...RELOAD_FILES],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (c) => (output += c));
  child.stderr.on('data', (c) => (output += c));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  const ms = Date.now() - t0;
  durations.push(ms);
  const pass = /^# pass (\d+)/m.exec(output)?.[1];
  const fail = /^# fail (\d+)/m.exec(output)?.[1];
  console.log(
    `run ${run}/${runs}: ${code === 0 ? 'ok' : 'FAILED'} (${pass} pass, ${fail} fail, ${ms} ms)`,
  );
  if (code !== 0) {
    console.log(output);
    background = false;
    process.exit(1);
  }
}
background = false;
durations.sort((a, b) => a - b);
console.log(
  `${runs} runs in a row passed${hogs ? ', beside two busy loops' : ''}, with the rest of the suite running beside them; run time median ${durations[Math.floor(runs / 2)]} ms, max ${durations[runs - 1]} ms`,
);
process.exit(0);
