// Browser check: the built ESM SDK in Debian's Chromium (driven by
// playwright-core), with the browser's own WebSocket, against the real
// Roster server. Bob's page watches the room; Alice's page opens (Bob's page
// shows her online) and then closes (Bob's page shows her offline). Then
// CollabKit's snippet (test/browser/collabkit.html) in a page of its own.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launchChromium, skipReason, staticServer } from '../../test-support/browser.mjs';
import { createAccount, createRoom, createUser, startRoster } from '../../test-support/roster.mjs';

const skip = skipReason();
if (skip) console.log(`# browser test ${skip}`);

describe('browser: presence in Chromium with the native WebSocket', { skip }, () => {
  let roster;
  let web;
  let browser;

  before(async () => {
    [roster, web, browser] = await Promise.all([
      startRoster(),
      staticServer(),
      launchChromium(),
    ]);
  });

  after(async () => {
    await browser?.close();
    await new Promise((r) => (web ? web.close(r) : r()));
    await roster?.cleanup();
  });

  test('a user goes online, then offline when their page closes', async () => {
    const account = await createAccount(roster);
    const room = await createRoom(roster, account, { name: 'Browser room' });
    const alice = await createUser(roster, account, { name: 'Alice', roomId: room.id });
    const bob = await createUser(roster, account, { name: 'Bob', roomId: room.id });
    const base = `http://127.0.0.1:${web.address().port}/test/browser/index.html`;
    const pageUrl = (token) => `${base}?server=${encodeURIComponent(roster.url)}&token=${encodeURIComponent(token)}`;

    const context = await browser.newContext();
    const errors = [];
    const bobPage = await context.newPage();
    bobPage.on('pageerror', (e) => errors.push(e.message));
    await bobPage.goto(pageUrl(bob.token));
    await bobPage.waitForSelector('body[data-joined="true"]', { timeout: 10_000 });
    assert.equal(await bobPage.textContent('#room'), room.id);
    assert.equal(await bobPage.textContent('#state'), 'connected');

    // Alice opens the page: Bob's page shows her online.
    const alicePage = await context.newPage();
    alicePage.on('pageerror', (e) => errors.push(e.message));
    await alicePage.goto(pageUrl(alice.token));
    await alicePage.waitForSelector('body[data-joined="true"]', { timeout: 10_000 });
    await alicePage.waitForSelector(`li[data-user-id="${alice.user.id}"][data-status="online"]`, { timeout: 10_000 });
    await bobPage.waitForSelector(`li[data-user-id="${alice.user.id}"][data-status="online"]`, { timeout: 10_000 });

    // Alice closes her page: after the grace period Bob's page shows her offline.
    await alicePage.close();
    await bobPage.waitForSelector(`li[data-user-id="${alice.user.id}"][data-status="offline"]`, { timeout: 15_000 });
    assert.equal(await bobPage.getAttribute(`li[data-user-id="${bob.user.id}"]`, 'data-status'), 'online');

    // A bad token: connect() rejects (the browser cannot see the 401; close-before-welcome is the refusal).
    const badPage = await context.newPage();
    await badPage.goto(pageUrl('not-a-token'));
    await badPage.waitForSelector('body[data-failed]', { timeout: 10_000 });
    assert.equal(await badPage.getAttribute('body', 'data-failed'), 'REFUSED');
    assert.match(await badPage.textContent('#state'), /RosterConnectionError/);

    if (process.env.ROSTER_BROWSER_SCREENSHOT) {
      await bobPage.screenshot({ path: process.env.ROSTER_BROWSER_SCREENSHOT });
    }
    assert.deepEqual(errors, []);
    await context.close();
  });

  test("CollabKit's snippet (default import, connect, join) puts the user online", async () => {
    const account = await createAccount(roster);
    const room = await createRoom(roster, account, { name: 'CollabKit room' });
    const alice = await createUser(roster, account, { name: 'Alice', roomId: room.id, customId: 'alice-001' });
    const bob = await createUser(roster, account, { name: 'Bob', roomId: room.id });
    const origin = `http://127.0.0.1:${web.address().port}`;
    const query = (token) => `?server=${encodeURIComponent(roster.url)}&token=${encodeURIComponent(token)}`;

    const context = await browser.newContext();
    const errors = [];
    // Bob's page (RosterClient) watches the room.
    const bobPage = await context.newPage();
    bobPage.on('pageerror', (e) => errors.push(e.message));
    await bobPage.goto(`${origin}/test/browser/index.html${query(bob.token)}`);
    await bobPage.waitForSelector('body[data-joined="true"]', { timeout: 10_000 });

    // Alice's page runs CollabKit's snippet.
    const alicePage = await context.newPage();
    alicePage.on('pageerror', (e) => errors.push(e.message));
    const requested = [];
    alicePage.on('request', (r) => requested.push(new URL(r.url()).pathname));
    await alicePage.goto(`${origin}/test/browser/collabkit.html${query(alice.token)}`);
    await alicePage.waitForSelector('body[data-joined], body[data-failed]', { timeout: 10_000 });
    assert.equal(await alicePage.getAttribute('body', 'data-failed'), null, await alicePage.textContent('#state'));
    assert.equal(await alicePage.getAttribute('body', 'data-room'), room.id, 'join() joined the token room');
    assert.equal(await alicePage.textContent('#state'), 'connected');
    await bobPage.waitForSelector(`li[data-user-id="${alice.user.id}"][data-status="online"]`, { timeout: 10_000 });

    // The browser's own WebSocket was used: the page fetched nothing but itself and the SDK.
    assert.deepEqual(
      [...new Set(requested)].filter((p) => p !== '/favicon.ico').sort(),
      ['/dist/index.js', '/test/browser/collabkit.html'],
    );
    assert.deepEqual(errors, []);
    await context.close();
  });
});
