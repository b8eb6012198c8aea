// Unit tests of the built SDK's pure parts (no server): URL building, the
// backoff, the emitter, the CJS build, option checks.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import WebSocket from 'ws';

import {
  backoffDelay,
  buildHttpUrl,
  buildRealtimeUrl,
  Emitter,
  RosterAdmin,
  RosterClient,
  RosterConnectionError,
} from '../dist/index.js';

test('unit: buildRealtimeUrl turns http(s) into ws(s) and adds the path and the token', () => {
  assert.equal(buildRealtimeUrl('https://api.collab-kit.com', 'T'), 'wss://api.collab-kit.com/v1/realtime?token=T');
  assert.equal(buildRealtimeUrl('http://127.0.0.1:8080/', 'T'), 'ws://127.0.0.1:8080/v1/realtime?token=T');
  assert.equal(buildRealtimeUrl('https://example.com/roster', 'T'), 'wss://example.com/roster/v1/realtime?token=T');
  assert.equal(buildRealtimeUrl('ws://h:1', 'T'), 'ws://h:1/v1/realtime?token=T');
  assert.equal(buildRealtimeUrl('wss://h/v1/realtime', 'T'), 'wss://h/v1/realtime?token=T');
  assert.equal(buildRealtimeUrl('wss://h/v1/realtime?token=old&x=1', 'new'), 'wss://h/v1/realtime?token=new&x=1');
  // The token is URL-encoded.
  assert.equal(buildRealtimeUrl('http://h', 'a+b/c='), 'ws://h/v1/realtime?token=a%2Bb%2Fc%3D');
  assert.throws(() => buildRealtimeUrl('ftp://h', 'T'), TypeError);
  assert.throws(() => buildRealtimeUrl('api.collab-kit.com', 'T'), TypeError);
});

test('unit: buildHttpUrl keeps a base path and maps ws(s) back to http(s)', () => {
  assert.equal(buildHttpUrl('https://h/', '/v1/x'), 'https://h/v1/x');
  assert.equal(buildHttpUrl('https://h/base/', '/v1/x'), 'https://h/base/v1/x');
  assert.equal(buildHttpUrl('wss://h:9', '/v1/x'), 'https://h:9/v1/x');
});

test('unit: backoffDelay is exponential, capped, with equal jitter', () => {
  const o = { initialDelayMs: 100, maxDelayMs: 1000 };
  const low = () => 0;
  const high = () => 1;
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, o, high)),
    [100, 200, 400, 800, 1000, 1000],
  );
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, o, low)),
    [50, 100, 200, 400, 500, 500],
  );
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(3, o);
    assert.ok(d >= 200 && d <= 400, String(d));
  }
  assert.equal(backoffDelay(10_000, o, high), 1000, 'no overflow for huge attempts');
  assert.equal(backoffDelay(0, o, high), 100, 'attempt < 1 counts as the first');
});

test('unit: Emitter calls listeners in order, once() fires once, off() removes', () => {
  class E extends Emitter {
    fire(e, p) {
      this.emit(e, p);
    }
  }
  const e = new E();
  const got = [];
  const off = e.on('x', (p) => got.push(['a', p]));
  e.once('x', (p) => got.push(['once', p]));
  e.on('x', (p) => got.push(['b', p]));
  e.on('y', (p) => got.push(['y', p]));
  e.fire('x', 1);
  off();
  e.fire('x', 2);
  e.fire('y', 3);
  assert.deepEqual(got, [
    ['a', 1],
    ['once', 1],
    ['b', 1],
    ['b', 2],
    ['y', 3],
  ]);
  assert.equal(e.listenerCount('x'), 1);
  e.removeAllListeners();
  assert.equal(e.listenerCount('x'), 0);
  e.fire('x', 4); // no listeners: nothing happens
});

test('unit: the CommonJS build works with an explicit WebSocket option (require("ws"))', () => {
  const require = createRequire(import.meta.url);
  const sdk = require('../dist/index.cjs');
  const c = new sdk.RosterClient({ serverUrl: 'https://api.collab-kit.com', authToken: 't', WebSocket: require('ws') });
  assert.equal(c.state, 'idle');
  assert.equal(typeof sdk.RosterAdmin, 'function');
  assert.equal(typeof sdk.RosterError, 'function');
});

test('unit: the CommonJS build has a default export and CollabKitClient beside the named exports', () => {
  const require = createRequire(import.meta.url);
  const sdk = require('../dist/index.cjs');
  assert.equal(typeof sdk.RosterClient, 'function');
  assert.equal(sdk.default, sdk.RosterClient, 'require(…).default is the client class');
  assert.equal(sdk.CollabKitClient, sdk.RosterClient, 'require(…).CollabKitClient is the client class');
  assert.equal(sdk.__esModule, true, 'bundlers and TypeScript interop map `import X from` onto .default');
  // Through the package name and its exports map, as a CommonJS app requires it.
  const byName = require('@roster/client');
  assert.equal(byName.default, byName.CollabKitClient);
  assert.equal(typeof byName.RosterAdmin, 'function');
  const c = new byName.default({ serverUrl: 'https://api.collab-kit.com', authToken: 't' });
  assert.equal(c.state, 'idle');
  assert.ok(c instanceof byName.RosterClient);
});

test('unit: the ESM build has the same default export and CollabKitClient', async () => {
  const esm = await import('../dist/index.js');
  assert.equal(esm.default, esm.RosterClient);
  assert.equal(esm.CollabKitClient, esm.RosterClient);
  assert.equal(esm.default, RosterClient);
  const byName = await import('@roster/client');
  assert.equal(byName.default, RosterClient, 'the exports map gives the ESM build to import');
});

test('unit: without a WebSocket option or a global WebSocket, connect() loads `ws` (ESM and CJS builds)', async () => {
  // Node 20 has no global WebSocket: the constructor no longer needs one.
  const require = createRequire(import.meta.url);
  const cjs = require('../dist/index.cjs');
  for (const Client of [RosterClient, cjs.RosterClient]) {
    const c = new Client({ serverUrl: 'http://127.0.0.1:9', authToken: 't', reconnect: false });
    const err = await c.connect().catch((e) => e);
    // Only a real socket to a closed port says ECONNREFUSED: `ws` was loaded and used.
    assert.equal(err?.code, 'REFUSED', String(err));
    assert.equal(err.closeCode, 1006, `a socket was opened and closed: ${err.message}`);
    assert.ok(err instanceof (Client === RosterClient ? RosterConnectionError : cjs.RosterConnectionError));
    assert.equal(c.state, 'closed');
  }
});

test('unit: close() while connect() is still loading `ws` rejects connect() with CLOSED and opens nothing', async () => {
  const c = new RosterClient({ serverUrl: 'http://127.0.0.1:9', authToken: 't' });
  const connecting = c.connect();
  await c.close();
  const err = await connecting.catch((e) => e);
  if (typeof globalThis.WebSocket === 'undefined') {
    assert.ok(err instanceof RosterConnectionError, String(err));
    assert.equal(err.code, 'CLOSED');
  }
  assert.equal(c.state, 'closed');
  // And a new connect() afterwards is a fresh attempt, not the aborted one.
  const again = await c.connect().catch((e) => e);
  assert.equal(again.code, 'REFUSED');
});

test('unit: a browser bundle of the ESM build does not include `ws`', async () => {
  const esbuild = await import('esbuild');
  for (const entry of ['../dist/index.js']) {
    const out = await esbuild.build({
      stdin: { contents: `export * from ${JSON.stringify(new URL(entry, import.meta.url).pathname)};`, resolveDir: '.' },
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      logLevel: 'silent',
      metafile: true,
    });
    const inputs = Object.keys(out.metafile.inputs);
    assert.ok(!inputs.some((i) => /node_modules[\\/]ws[\\/]/.test(i)), `bundled: ${inputs.join(', ')}`);
    assert.ok(out.outputFiles[0].text.includes('loadNodeWebSocket'), 'the bundle is of the SDK');
  }
});

test('unit: option checks', () => {
  assert.throws(() => new RosterClient({ serverUrl: 'http://h', authToken: 't', WebSocket: {} }), TypeError);
  assert.throws(() => new RosterClient({ serverUrl: 'nope', authToken: 't', WebSocket }), TypeError);
  assert.throws(() => new RosterClient({ serverUrl: 'http://h', authToken: '', WebSocket }), TypeError);
  assert.throws(() => new RosterAdmin({ serverUrl: 'http://h', apiKey: '', accountId: 'a' }), TypeError);
});

test('unit: requests before connect() reject with NOT_CONNECTED; close() before connect() is harmless', async () => {
  const c = new RosterClient({ serverUrl: 'http://127.0.0.1:9', authToken: 't', WebSocket });
  await assert.rejects(c.join('r'), (e) => e instanceof RosterConnectionError && e.code === 'NOT_CONNECTED');
  await assert.rejects(c.ping(), (e) => e instanceof RosterConnectionError && e.code === 'NOT_CONNECTED');
  await c.close();
  assert.equal(c.state, 'closed');
});

test('unit: connect() to a closed port rejects with REFUSED, without retrying', async () => {
  const c = new RosterClient({ serverUrl: 'http://127.0.0.1:9', authToken: 't', WebSocket });
  let retried = false;
  c.on('reconnecting', () => (retried = true));
  const err = await c.connect().catch((e) => e);
  assert.ok(err instanceof RosterConnectionError);
  assert.equal(err.code, 'REFUSED');
  assert.equal(c.state, 'closed');
  assert.equal(retried, false, 'connect() reports the failure; only established connections are reconnected');
});
