// Helpers for the end-to-end tests: start the real Roster server, call its
// REST API, wait for events with deadlines. (Kept outside test/ so that
// `node --test test/` does not run this file as a test.)

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root: clients/typescript/test-support → ../../.. */
export const repoRoot = resolve(here, '..', '..', '..');
export const OPERATOR_KEY = 'roster-sdk-tests-operator-key-0123456789abcdef';

/** The server binary: `ROSTER_BIN`, else `<repo>/target/debug/roster`. */
export function rosterBinary() {
  return process.env.ROSTER_BIN || join(repoRoot, 'target', 'debug', 'roster');
}

/** Why the end-to-end tests cannot run, or null when they can. */
export function missingServer() {
  const bin = rosterBinary();
  if (existsSync(bin)) return null;
  return `the Roster server binary is missing at ${bin}: build it with \`cargo build\` at the repository root, or set ROSTER_BIN`;
}

/** A fresh temporary directory, removed by `cleanup()`. */
export function tempDir() {
  return mkdtempSync(join(tmpdir(), 'roster-sdk-'));
}

/**
 * Starts `roster serve` on 127.0.0.1 (port 0 unless `port` is given) with a
 * fresh SQLite database unless `dbDir` is given; resolves once the JSON log
 * line "roster is listening" names the address.
 */
export async function startRoster({ dbDir, port = 0, env = {}, timeoutMs = 20_000 } = {}) {
  const dir = dbDir ?? tempDir();
  const ownsDir = dbDir === undefined;
  const child = spawn(rosterBinary(), ['serve'], {
    env: {
      ...process.env,
      ROSTER_LISTEN: `127.0.0.1:${port}`,
      ROSTER_DATABASE_URL: `sqlite://${join(dir, 'r.db')}`,
      ROSTER_OPERATOR_KEY: OPERATOR_KEY,
      ROSTER_LOG: 'info',
      ROSTER_LOG_FORMAT: 'json',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const logs = [];
  let exited = null;
  const exitPromise = new Promise((res) => child.once('exit', (code, signal) => res((exited = { code, signal }))));

  const addr = await new Promise((res, rej) => {
    let buf = '';
    const timer = setTimeout(
      () => rej(new Error(`roster did not say "roster is listening" within ${timeoutMs} ms; log:\n${logs.join('\n')}`)),
      timeoutMs,
    );
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        if (logs.length > 500) logs.shift();
        let rec;
        try {
          rec = JSON.parse(line);
        } catch {
          continue;
        }
        const fields = rec.fields ?? rec;
        if (fields.message === 'roster is listening' && fields.addr) {
          clearTimeout(timer);
          res(fields.addr);
        }
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      rej(err);
    });
    exitPromise.then((e) => {
      clearTimeout(timer);
      rej(new Error(`roster exited (${JSON.stringify(e)}) before listening; log:\n${logs.join('\n')}`));
    });
  });

  const url = `http://${addr}`;
  return {
    url,
    addr,
    port: Number(addr.slice(addr.lastIndexOf(':') + 1)),
    dbDir: dir,
    logs,
    child,
    /** SIGTERM, wait for the exit (SIGKILL after `graceMs`). */
    async stop(graceMs = 10_000) {
      if (exited) return exited;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const e = await exitPromise;
      clearTimeout(killer);
      return e;
    },
    /** Stops the server and removes its database directory (when it made it). */
    async cleanup() {
      await this.stop();
      if (ownsDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One REST call; resolves with `{status, body}` (the parsed envelope). */
export async function api(server, method, path, { auth, body } = {}) {
  const headers = { Accept: 'application/json' };
  if (auth) headers.Authorization = `Bearer ${auth}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.status, body: parsed };
}

/** Creates an account with the operator key: `{ accountId, apiKey }`. */
export async function createAccount(server, name = 'sdk-tests') {
  const r = await api(server, 'POST', '/v1/accounts', { auth: OPERATOR_KEY, body: { name } });
  if (r.status !== 201 && r.status !== 200) throw new Error(`create account: ${r.status} ${JSON.stringify(r.body)}`);
  return { accountId: r.body.data.account.id, apiKey: r.body.data.api_key };
}

/** Creates a room: the room object. */
export async function createRoom(server, account, body) {
  const r = await api(server, 'POST', `/v1/accounts/${account.accountId}/rooms`, { auth: account.apiKey, body });
  if (r.status !== 201) throw new Error(`create room: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.data.room;
}

/** Creates a user: `{ user, token }`. */
export async function createUser(server, account, body) {
  const r = await api(server, 'POST', `/v1/accounts/${account.accountId}/users`, { auth: account.apiKey, body });
  if (r.status !== 201) throw new Error(`create user: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.data;
}

/** Reads a user with the API key. */
export async function getUser(server, account, userId) {
  const r = await api(server, 'GET', `/v1/accounts/${account.accountId}/users/${userId}`, { auth: account.apiKey });
  if (r.status !== 200) throw new Error(`get user: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.data.user;
}

/**
 * Waits for the first `event` of `emitter` that satisfies `predicate`;
 * rejects after `timeoutMs` naming what it waited for.
 */
export function waitForEvent(emitter, event, predicate = () => true, timeoutMs = 10_000, what = event) {
  return new Promise((res, rej) => {
    const timer = setTimeout(() => {
      off();
      rej(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const off = emitter.on(event, (payload) => {
      let ok = false;
      try {
        ok = predicate(payload);
      } catch (err) {
        clearTimeout(timer);
        off();
        rej(err);
        return;
      }
      if (ok) {
        clearTimeout(timer);
        off();
        res(payload);
      }
    });
  });
}

/** Polls `check` (async, truthy = done) until it passes or `timeoutMs` elapses. For server state with no event to wait on. */
export async function eventually(check, { timeoutMs = 10_000, intervalMs = 50, what = 'a condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
