// End-to-end tests of the built SDK (dist/) against the real Roster server:
// each suite spawns `roster serve` on a free port with a fresh SQLite file.
// No mocks: every frame goes through the real gateway.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';

import { RosterAdmin, RosterApiError, RosterClient, RosterConnectionError, RosterError } from '../dist/index.js';
import {
  api,
  createAccount,
  createRoom,
  createUser,
  eventually,
  getUser,
  missingServer,
  startRoster,
  waitForEvent,
} from '../test-support/roster.mjs';

const missing = missingServer();
if (missing && process.env.CI === 'true') throw new Error(missing);
const skip = missing ? `skipped: ${missing}` : false;

/** Presence offline comes after the server's grace period (3 s by default): wait generously. */
const OFFLINE_TIMEOUT_MS = 15_000;

const clients = [];
/** A client for `token`, closed after the suite. */
function client(server, token, extra = {}) {
  const c = new RosterClient({
    serverUrl: server.url,
    authToken: token,
    WebSocket,
    reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
    requestTimeoutMs: 5_000,
    ...extra,
  });
  clients.push(c);
  return c;
}

describe('RosterClient against the real server', { skip }, () => {
  let server;
  let account;
  let room;

  before(async () => {
    server = await startRoster();
    account = await createAccount(server);
    room = await createRoom(server, account, { name: 'Standup' });
  });

  after(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await server?.cleanup();
  });

  test('the seed example: connect(), join() without argument joins the token room, the user is online', async () => {
    const alice = await createUser(server, account, {
      name: 'Alice',
      roomId: room.id,
      profilePicture: 'https://example.com/alice.png',
      customId: 'alice-001',
    });
    const bob = await createUser(server, account, { name: 'Bob', roomId: room.id });
    assert.equal(alice.user.status, 'offline');

    // Bob is in the room first, to see Alice arrive.
    const bobClient = client(server, bob.token);
    await bobClient.connect();
    await bobClient.join();

    const seen = waitForEvent(
      bobClient,
      'presence',
      (p) => p.userId === alice.user.id && p.status === 'online',
      10_000,
      "Alice's presence online",
    );

    // The CollabKit flow, verbatim but for the class name.
    const aliceClient = client(server, alice.token);
    const welcome = await aliceClient.connect();
    assert.equal(welcome.userId, alice.user.id);
    assert.equal(welcome.accountId, account.accountId);
    assert.equal(typeof welcome.connectionId, 'string');
    assert.ok(welcome.heartbeatMs > 0);
    assert.equal(aliceClient.state, 'connected');

    const snapshot = await aliceClient.join(); // User is now online
    assert.equal(snapshot.roomId, room.id);
    const me = snapshot.members.find((m) => m.userId === alice.user.id);
    assert.ok(me, `the snapshot lists the joiner: ${JSON.stringify(snapshot)}`);
    assert.equal(me.status, 'online');
    assert.ok(snapshot.members.some((m) => m.userId === bob.user.id && m.status === 'online'));
    assert.deepEqual(aliceClient.rooms, [room.id]);

    const presence = await seen;
    assert.deepEqual(Object.keys(presence).sort(), ['at', 'roomId', 'status', 'userId']);
    assert.equal(presence.roomId, room.id);
    assert.ok(!Number.isNaN(Date.parse(presence.at)), presence.at);

    await eventually(async () => (await getUser(server, account, alice.user.id)).status === 'online', {
      what: 'GET /users/{id} to show status online',
    });

    assert.ok((await aliceClient.ping()) >= 0);
  });

  test('offline is announced after the other client closes (grace period)', async () => {
    const alice = await createUser(server, account, { name: 'Alice2', roomId: room.id });
    const bob = await createUser(server, account, { name: 'Bob2', roomId: room.id });
    const bobClient = client(server, bob.token);
    await bobClient.connect();
    await bobClient.join(room.id);
    const aliceClient = client(server, alice.token);
    await aliceClient.connect();
    await aliceClient.join();
    await eventually(async () => (await getUser(server, account, alice.user.id)).status === 'online', {
      what: 'Alice online',
    });

    const offline = waitForEvent(
      bobClient,
      'presence',
      (p) => p.userId === alice.user.id && p.status === 'offline',
      OFFLINE_TIMEOUT_MS,
      "Alice's presence offline",
    );
    const disconnected = waitForEvent(aliceClient, 'disconnected');
    await aliceClient.close();
    const d = await disconnected;
    assert.equal(d.willReconnect, false);
    assert.equal(aliceClient.state, 'closed');
    const p = await offline;
    assert.equal(p.roomId, room.id);

    const user = await eventually(
      async () => {
        const u = await getUser(server, account, alice.user.id);
        return u.status === 'offline' && u.last_seen_at ? u : null;
      },
      { what: 'Alice offline with last_seen_at' },
    );
    assert.ok(user.last_seen_at);
  });

  test('leave() announces offline at once', async () => {
    const alice = await createUser(server, account, { name: 'Alice3', roomId: room.id });
    const bob = await createUser(server, account, { name: 'Bob3', roomId: room.id });
    const bobClient = client(server, bob.token);
    await bobClient.connect();
    await bobClient.join();
    const aliceClient = client(server, alice.token);
    await aliceClient.connect();
    await aliceClient.join();

    const offline = waitForEvent(
      bobClient,
      'presence',
      (p) => p.userId === alice.user.id && p.status === 'offline',
      // well under the 3 s grace period: an explicit leave is announced at once
      2_000,
      "Alice's presence offline after leave",
    );
    await aliceClient.leave(room.id);
    assert.deepEqual(aliceClient.rooms, []);
    await offline;
  });

  test('setStatus("away") reaches the room and the user record', async () => {
    const alice = await createUser(server, account, { name: 'Alice4', roomId: room.id });
    const bob = await createUser(server, account, { name: 'Bob4', roomId: room.id });
    const bobClient = client(server, bob.token);
    await bobClient.connect();
    await bobClient.join();
    const aliceClient = client(server, alice.token);
    await aliceClient.connect();
    await aliceClient.join();

    const away = waitForEvent(
      bobClient,
      'presence',
      (p) => p.userId === alice.user.id && p.status === 'away',
      10_000,
      "Alice's presence away",
    );
    await aliceClient.setStatus('away');
    assert.equal(aliceClient.status, 'away');
    assert.equal((await away).roomId, room.id);
    await eventually(async () => (await getUser(server, account, alice.user.id)).status === 'away', {
      what: 'GET /users/{id} to show status away',
    });

    const back = waitForEvent(bobClient, 'presence', (p) => p.userId === alice.user.id && p.status === 'online');
    await aliceClient.setStatus('online');
    await back;
    await assert.rejects(aliceClient.setStatus('busy'), TypeError);
  });

  test('join of a private room the user is not a member of rejects with FORBIDDEN; the connection stays open', async () => {
    const secret = await createRoom(server, account, { name: 'Board', visibility: 'private' });
    const carol = await createUser(server, account, { name: 'Carol', roomId: room.id });
    const c = client(server, carol.token);
    await c.connect();

    const err = await c.join(secret.id).then(
      () => assert.fail('join of a private room succeeded'),
      (e) => e,
    );
    assert.ok(err instanceof RosterError, String(err));
    assert.equal(err.code, 'FORBIDDEN');
    assert.ok(err.message.length > 0);
    assert.equal(typeof err.requestId, 'number');
    assert.deepEqual(c.rooms, []);

    const missingRoom = await c.join('0190a000-0000-7000-8000-000000000000').catch((e) => e);
    assert.ok(missingRoom instanceof RosterError);
    assert.equal(missingRoom.code, 'NOT_FOUND');

    // Still connected: a member of the private room may join it, and Carol may still join hers.
    assert.equal(c.state, 'connected');
    const snap = await c.join(room.id);
    assert.equal(snap.roomId, room.id);
    const member = await createUser(server, account, { name: 'Dave', roomId: secret.id });
    const d = client(server, member.token);
    await d.connect();
    assert.equal((await d.join(secret.id)).roomId, secret.id);
  });

  test('requests are matched to their answers by id, even when many are in flight', async () => {
    const u = await createUser(server, account, { name: 'Many', roomId: room.id });
    const c = client(server, u.token);
    await c.connect();
    const secret = await createRoom(server, account, { name: 'Private2', visibility: 'private' });
    const results = await Promise.allSettled([
      c.ping(),
      c.join(secret.id),
      c.join(room.id),
      c.setStatus('away'),
      c.ping(),
      c.leave(room.id),
    ]);
    assert.equal(results[0].status, 'fulfilled');
    assert.equal(results[1].status, 'rejected');
    assert.equal(results[1].reason.code, 'FORBIDDEN');
    assert.equal(results[2].status, 'fulfilled');
    assert.equal(results[2].value.roomId, room.id);
    assert.equal(results[3].status, 'fulfilled');
    assert.equal(results[4].status, 'fulfilled');
    assert.equal(results[5].status, 'fulfilled');
  });

  test('an invalid token makes connect() reject with RosterConnectionError', async () => {
    for (const token of ['not-a-token', 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln']) {
      const c = client(server, token);
      const err = await c.connect().then(
        () => assert.fail('connect() succeeded with an invalid token'),
        (e) => e,
      );
      assert.ok(err instanceof RosterConnectionError, String(err));
      assert.equal(err.code, 'REFUSED');
      assert.equal(err.status, 401, 'Node `ws` exposes the HTTP status of the refused upgrade');
      assert.equal(c.state, 'closed');
      await assert.rejects(c.join(), (e) => e instanceof RosterConnectionError && e.code === 'NOT_CONNECTED');
    }
    // An API key is not a user token either.
    const k = client(server, account.apiKey);
    await assert.rejects(k.connect(), (e) => e instanceof RosterConnectionError && e.code === 'REFUSED');
  });

  test('deactivation closes the connection with 1008 and the client does not reconnect', async () => {
    const u = await createUser(server, account, { name: 'Eve', roomId: room.id });
    const c = client(server, u.token);
    await c.connect();
    await c.join();
    let reconnecting = 0;
    c.on('reconnecting', () => reconnecting++);
    const disconnected = waitForEvent(c, 'disconnected');
    const r = await api(server, 'POST', `/v1/accounts/${account.accountId}/users/${u.user.id}/deactivate`, {
      auth: account.apiKey,
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const d = await disconnected;
    assert.equal(d.code, 1008);
    assert.equal(d.willReconnect, false);
    assert.equal(c.state, 'closed');
    assert.equal(reconnecting, 0);
  });

  test('after 1008, getToken() is asked; the same token again means giving up', async () => {
    const u = await createUser(server, account, { name: 'Frank', roomId: room.id });
    let asked = 0;
    const c = client(server, u.token, {
      getToken: async () => {
        asked++;
        return u.token;
      },
    });
    await c.connect();
    await c.join();
    const gaveUp = waitForEvent(c, 'disconnected', (d) => !d.willReconnect, 10_000, 'the final disconnected');
    const first = waitForEvent(c, 'disconnected', (d) => d.code === 1008);
    const errorEvent = waitForEvent(c, 'error');
    await api(server, 'POST', `/v1/accounts/${account.accountId}/users/${u.user.id}/deactivate`, {
      auth: account.apiKey,
    });
    assert.equal((await first).willReconnect, true, 'with getToken the client tries for a new token');
    await gaveUp;
    assert.equal(asked, 1);
    assert.ok((await errorEvent) instanceof RosterConnectionError);
    assert.equal(c.state, 'closed');
  });
});

describe('reconnect after the server closes the socket', { skip }, () => {
  let server;
  let first;
  after(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await server?.cleanup();
    await first?.cleanup(); // owns the database directory the restarted server reused
  });

  test('both clients reconnect with backoff, ask getToken, re-join their rooms and re-apply away', async () => {
    server = await startRoster();
    first = server;
    const account = await createAccount(server);
    const room = await createRoom(server, account, { name: 'Lobby' });
    const other = await createRoom(server, account, { name: 'Side' });
    const alice = await createUser(server, account, { name: 'Alice', roomId: room.id });
    const bob = await createUser(server, account, { name: 'Bob', roomId: room.id });

    let tokenAsked = 0;
    const aliceClient = client(server, alice.token, {
      getToken: () => {
        tokenAsked++;
        return alice.token;
      },
    });
    const bobClient = client(server, bob.token);
    await bobClient.connect();
    await bobClient.join();
    await aliceClient.connect();
    await aliceClient.join();
    await aliceClient.join(other.id);
    await aliceClient.setStatus('away');
    assert.deepEqual(aliceClient.rooms, [room.id, other.id]);

    const aliceDown = waitForEvent(aliceClient, 'disconnected');
    const bobDown = waitForEvent(bobClient, 'disconnected');
    const aliceRetry = waitForEvent(aliceClient, 'reconnecting');
    // SIGTERM: the server closes every socket with 1001 and exits.
    await first.stop();
    const d = await aliceDown;
    assert.equal(d.code, 1001, `close code ${d.code} ${d.reason}`);
    assert.equal(d.willReconnect, true);
    assert.equal((await bobDown).willReconnect, true);
    const r = await aliceRetry;
    assert.equal(r.attempt, 1);
    assert.ok(r.delayMs >= 25 && r.delayMs <= 50, `first delay ${r.delayMs} within [initial/2, initial]`);
    assert.equal(aliceClient.state, 'reconnecting');
    // Requests need a connection meanwhile.
    await assert.rejects(aliceClient.ping(), (e) => e instanceof RosterConnectionError && e.code === 'NOT_CONNECTED');

    // The same database and the same port: the clients find the server again.
    const aliceBack = waitForEvent(aliceClient, 'connected', (c) => c.reconnected, 30_000, 'Alice reconnected');
    const aliceRejoined = waitForEvent(aliceClient, 'snapshot', (s) => s.roomId === other.id, 30_000, 'Alice re-joined Side');
    const bobBack = waitForEvent(bobClient, 'connected', (c) => c.reconnected, 30_000, 'Bob reconnected');
    const bobRejoined = waitForEvent(bobClient, 'snapshot', (s) => s.roomId === room.id, 30_000, 'Bob re-joined Lobby');
    server = await startRoster({ dbDir: first.dbDir, port: first.port });
    assert.equal(server.port, first.port);

    const back = await aliceBack;
    assert.equal(back.userId, alice.user.id);
    await aliceRejoined;
    await bobBack;
    await bobRejoined;
    assert.ok(tokenAsked >= 1, 'getToken() was called before reconnecting');
    assert.deepEqual(aliceClient.rooms, [room.id, other.id]);
    assert.equal(aliceClient.state, 'connected');

    // Alice's `away` was re-applied after the re-join.
    await eventually(async () => (await getUser(server, account, alice.user.id)).status === 'away', {
      what: 'Alice away again after the reconnect',
      timeoutMs: 15_000,
    });
    // And Bob, re-joined, hears Alice's changes again.
    const online = waitForEvent(bobClient, 'presence', (p) => p.userId === alice.user.id && p.status === 'online');
    await aliceClient.setStatus('online');
    await online;
    await eventually(async () => (await getUser(server, account, bob.user.id)).status === 'online', {
      what: 'Bob online again',
    });
  });
});

describe('reconnect to a server that no longer knows the token', { skip }, () => {
  let server;
  after(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await server?.cleanup();
  });

  test('without getToken, a reconnect refused with 401 ends the retries', async () => {
    server = await startRoster();
    const first = server;
    const account = await createAccount(server);
    const room = await createRoom(server, account, { name: 'Lobby' });
    const u = await createUser(server, account, { name: 'Gina', roomId: room.id });
    const c = client(server, u.token);
    await c.connect();
    await c.join();

    const down = waitForEvent(c, 'disconnected', (d) => d.willReconnect);
    await first.stop();
    await down;
    const gaveUp = waitForEvent(c, 'disconnected', (d) => !d.willReconnect, 30_000, 'giving up');
    const error = waitForEvent(c, 'error', () => true, 30_000, 'the error event');
    // A fresh database on the same port: new signing keys, the old token is refused.
    server = await startRoster({ port: first.port });
    await first.cleanup();
    await gaveUp;
    const e = await error;
    assert.ok(e instanceof RosterConnectionError);
    assert.match(e.message, /401/);
    assert.equal(c.state, 'closed');
  });
});

describe('RosterAdmin against the real server', { skip }, () => {
  let server;
  let account;
  let admin;
  before(async () => {
    server = await startRoster();
    account = await createAccount(server);
    admin = new RosterAdmin({ serverUrl: server.url, apiKey: account.apiKey, accountId: account.accountId });
  });
  after(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await server?.cleanup();
  });

  test('createRoom, createUser (the CollabKit request) and the client it feeds', async () => {
    const room = await admin.createRoom({ name: 'Standup' });
    assert.equal(room.name, 'Standup');
    assert.equal(room.visibility, 'public');
    const data = await admin.createUser({
      name: 'Alice',
      roomId: room.id,
      profilePicture: 'https://example.com/alice.png',
      customId: 'alice-001',
    });
    assert.equal(data.user.name, 'Alice');
    assert.equal(data.user.room_id, room.id);
    assert.equal(data.user.custom_id, 'alice-001');
    assert.equal(data.user.status, 'offline');
    assert.match(data.token, /^eyJ/);

    const c = client(server, data.token);
    await c.connect();
    await c.join();
    await eventually(async () => (await admin.getUser(data.user.id)).status === 'online', { what: 'online' });
  });

  test('a validation error surfaces code, field and message', async () => {
    const err = await admin.createUser({ name: 'x'.repeat(101) }).catch((e) => e);
    assert.ok(err instanceof RosterApiError, String(err));
    assert.equal(err.code, 'VALIDATION_ERROR');
    assert.equal(err.field, 'name');
    assert.equal(err.status, 400);
    assert.match(err.message, /100/);
    assert.equal(typeof err.requestId, 'string');

    const unknown = await admin.createUser({ name: 'y', nmae: 'typo' }).catch((e) => e);
    assert.equal(unknown.code, 'VALIDATION_ERROR');

    const noRoom = await admin.createUser({ name: 'z', roomId: '0190a000-0000-7000-8000-000000000000' }).catch((e) => e);
    assert.equal(noRoom.code, 'NOT_FOUND');
    assert.equal(noRoom.field, 'room_id');
    assert.equal(noRoom.status, 404);
  });

  test('a wrong API key is UNAUTHORIZED; an unreachable server is NETWORK_ERROR', async () => {
    const bad = new RosterAdmin({ serverUrl: server.url, apiKey: 'rk_wrong', accountId: account.accountId });
    const err = await bad.createRoom({ name: 'r' }).catch((e) => e);
    assert.ok(err instanceof RosterApiError);
    assert.equal(err.code, 'UNAUTHORIZED');
    assert.equal(err.status, 401);

    const down = new RosterAdmin({ serverUrl: 'http://127.0.0.1:9', apiKey: 'rk_x', accountId: 'a', timeoutMs: 5000 });
    const net = await down.createRoom({ name: 'r' }).catch((e) => e);
    assert.ok(net instanceof RosterApiError);
    assert.equal(net.code, 'NETWORK_ERROR');
    assert.equal(net.status, 0);
  });
});
