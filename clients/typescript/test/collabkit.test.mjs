// CollabKit's client snippet, verbatim but for the import line, in plain
// Node (20 has no global WebSocket: the SDK loads `ws` itself), against the
// real Roster server. The package is imported by its name, through its
// exports map, as CollabKit's code imports it.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, test } from 'node:test';

import CollabKitClient from '@roster/client';
import { RosterClient } from '@roster/client';
import {
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

const nodeMajor = Number(process.versions.node.split('.')[0]);

describe('CollabKit: the client snippet with only the import line changed', { skip }, () => {
  let server;
  let account;
  let room;
  const clients = [];

  before(async () => {
    server = await startRoster();
    account = await createAccount(server);
    room = await createRoom(server, account, { name: 'Standup' });
  });

  after(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await server?.cleanup();
  });

  /** Bob, already in the room, to see the snippet's user arrive. */
  async function watcher(name) {
    const bob = await createUser(server, account, { name, roomId: room.id });
    const c = new CollabKitClient({ serverUrl: server.url, authToken: bob.token });
    clients.push(c);
    await c.connect();
    await c.join();
    return c;
  }

  test('ESM: import CollabKitClient from "@roster/client"; connect(); join() → the user is online', async () => {
    if (nodeMajor < 22) {
      assert.equal(typeof globalThis.WebSocket, 'undefined', 'Node 20: no global WebSocket, no WebSocket option');
    }
    assert.equal(CollabKitClient, RosterClient);
    const bob = await watcher('Bob');
    const serverUrl = server.url;
    // CollabKit's backend: POST /users with CollabKit's body; `data` is the answer's data.
    const data = await createUser(server, account, {
      name: 'Alice',
      roomId: room.id,
      profilePicture: 'https://example.com/alice.png',
      customId: 'alice-001',
    });
    const seen = waitForEvent(
      bob,
      'presence',
      (p) => p.userId === data.user.id && p.status === 'online',
      10_000,
      "Alice's presence online, seen by Bob",
    );

    // ---- CollabKit's snippet, verbatim ----
    const client = new CollabKitClient({ serverUrl, authToken: data.token });
    await client.connect();
    await client.join();
    // ----
    clients.push(client);

    const presence = await seen;
    assert.equal(presence.roomId, room.id);
    assert.equal(client.state, 'connected');
    assert.deepEqual(client.rooms, [room.id], 'join() without argument joined the token room');
    assert.equal(client.welcome.userId, data.user.id);
    await eventually(async () => (await getUser(server, account, data.user.id)).status === 'online', {
      what: 'GET /users/{id} to show Alice online',
    });
  });

  test('CJS: require("@roster/client").default and .CollabKitClient run the same snippet', async () => {
    const require = createRequire(import.meta.url);
    const sdk = require('@roster/client');
    assert.equal(sdk.default, sdk.CollabKitClient);
    const bob = await watcher('Bob2');
    for (const [name, Client] of [
      ['Carol', sdk.default],
      ['Dave', sdk.CollabKitClient],
    ]) {
      const data = await createUser(server, account, { name, roomId: room.id });
      const seen = waitForEvent(
        bob,
        'presence',
        (p) => p.userId === data.user.id && p.status === 'online',
        10_000,
        `${name}'s presence online, seen by Bob`,
      );
      const client = new Client({ serverUrl: server.url, authToken: data.token });
      clients.push(client);
      await client.connect();
      await client.join();
      await seen;
      assert.deepEqual(client.rooms, [room.id]);
    }
  });
});
