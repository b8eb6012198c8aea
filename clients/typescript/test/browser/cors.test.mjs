// CORS in Chromium: a page served from another origin logs in, reads its
// answers, calls the API with the access token and refreshes by cookie
// (with the CSRF header) — when its origin is in `cors_allowed_origins`.
// A page from an origin not listed cannot read any answer.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launchChromium, skipReason, staticServer } from '../../test-support/browser.mjs';
import { api, createAccount, startRoster } from '../../test-support/roster.mjs';

const skip = skipReason();
if (skip) console.log(`# CORS browser test ${skip}`);

/** Run in the page: the calls a browser app makes; what it could read. */
async function inPage({ server, accountId, userId }) {
  const base = `${server}/v1/accounts/${accountId}`;
  const out = {};
  try {
    const login = await fetch(`${base}/auth/login`, {
      method: 'POST',
      credentials: 'include',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: 'ada', password: 'correct horse battery', cookies: true }),
    });
    out.login = login.status;
    out.requestId = login.headers.get('x-request-id');
    const access = (await login.json()).data.access_token;
    const me = await fetch(`${base}/users/${userId}`, { headers: { Authorization: `Bearer ${access}` } });
    out.me = me.status;
    out.name = (await me.json()).data.user.name;
    const csrf = document.cookie.split('; ').find((c) => c.startsWith('roster_csrf='))?.split('=')[1];
    const refresh = await fetch(`${base}/auth/refresh`, {
      method: 'POST',
      credentials: 'include',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf ?? '' },
      body: '{}',
    });
    out.refresh = refresh.status;
  } catch (e) {
    out.blocked = String(e);
  }
  return out;
}

describe('browser: the REST API from another origin (CORS)', { skip }, () => {
  let roster;
  let web;
  let browser;

  before(async () => {
    [web, browser] = await Promise.all([staticServer(), launchChromium()]);
    const origin = `http://127.0.0.1:${web.address().port}`;
    roster = await startRoster({ env: { ROSTER_CORS_ALLOWED_ORIGINS: JSON.stringify([origin]) } });
  });

  after(async () => {
    await browser?.close();
    await new Promise((r) => (web ? web.close(r) : r()));
    await roster?.cleanup();
  });

  test('a listed origin logs in, calls and refreshes; another reads nothing', async () => {
    const account = await createAccount(roster);
    const created = await api(roster, 'POST', `/v1/accounts/${account.accountId}/users`, {
      auth: account.apiKey,
      body: { name: 'Ada', username: 'ada', password: 'correct horse battery' },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const args = { server: roster.url, accountId: account.accountId, userId: created.body.data.user.id };
    const port = web.address().port;

    const context = await browser.newContext();
    const listed = await context.newPage();
    await listed.goto(`http://127.0.0.1:${port}/test/browser/blank.html`);
    const got = await listed.evaluate(inPage, args);
    assert.deepEqual(
      { login: got.login, me: got.me, name: got.name, refresh: got.refresh, blocked: got.blocked },
      { login: 200, me: 200, name: 'Ada', refresh: 200, blocked: undefined },
    );
    assert.ok(got.requestId, 'X-Request-Id is exposed to the page');

    // `localhost` is another origin than `127.0.0.1`, and it is not listed.
    const other = await context.newPage();
    await other.goto(`http://localhost:${port}/test/browser/blank.html`);
    const refused = await other.evaluate(inPage, args);
    assert.match(refused.blocked ?? '', /TypeError|Failed to fetch/, JSON.stringify(refused));
    assert.equal(refused.login, undefined);
    await context.close();
  });
});
