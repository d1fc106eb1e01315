// The published package.json carries no install-time script. "prepare" builds dist/ after
// `npm ci` in a checkout, but in the tarball dist/ is already built, and npm 11 warns about every
// install script of a global install ("not yet covered by allowScripts"). npm has no setting for
// it, so "prepack" removes the script from package.json and "postpack" puts the file back, byte
// for byte (the way pinst does it for husky).
//   node deploy/pack-manifest.mjs strip | restore
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

const manifest = new URL('../package.json', import.meta.url);
const saved = new URL('../.package.json.prepack', import.meta.url);
const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall', 'prepare'];

const [action] = process.argv.slice(2);
if (action === 'strip') {
  const text = readFileSync(manifest, 'utf8');
  // A pack that died before its postpack left the saved original: it is still the original.
  if (!existsSync(saved)) writeFileSync(saved, text);
  const json = JSON.parse(text);
  for (const name of INSTALL_SCRIPTS) delete json.scripts?.[name];
  writeFileSync(manifest, `${JSON.stringify(json, null, 2)}\n`);
} else if (action === 'restore') {
  if (existsSync(saved)) renameSync(saved, manifest);
} else {
  process.stderr.write('usage: node deploy/pack-manifest.mjs strip|restore\n');
  process.exit(64);
}
