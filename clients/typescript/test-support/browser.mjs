// Browser helpers for the end-to-end tests: Debian's Chromium (driven by
// playwright-core) and a static server for the package's pages.

import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

import { missingServer } from './roster.mjs';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Why a browser test cannot run (false when it can); in CI, a throw. */
export function skipReason() {
  const problems = [];
  if (!existsSync(CHROMIUM)) {
    problems.push(`Chromium is missing at ${CHROMIUM} (install it: apt-get install -y chromium)`);
  }
  const server = missingServer();
  if (server) problems.push(server);
  if (problems.length === 0) return false;
  // In CI a missing browser or server is a failure, never a silent skip.
  if (process.env.CI === 'true') throw new Error(`browser test cannot run: ${problems.join('; ')}`);
  return `skipped: ${problems.join('; ')}`;
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.map': 'application/json' };

/** Serves /dist/* and /test/browser/* of the package, nothing else. */
export function staticServer() {
  const http = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = normalize(join(packageRoot, path));
    const allowed = [join(packageRoot, 'dist') + sep, join(packageRoot, 'test', 'browser') + sep];
    if (!allowed.some((dir) => file.startsWith(dir)) || !existsSync(file)) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Cache-Control': 'no-store' });
    res.end(readFileSync(file));
  });
  return new Promise((res) => http.listen(0, '127.0.0.1', () => res(http)));
}

/** Headless Chromium. */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
    timeout: 30_000,
  });
}
