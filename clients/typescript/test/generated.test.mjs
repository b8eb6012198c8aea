// Drift check: src/generated/openapi.ts must be exactly what the current
// server's OpenAPI document generates (scripts/gen-types.mjs), so the SDK's
// REST types cannot drift from the server.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fetchDocument, generate, GENERATED_FILE, packageRoot } from '../scripts/gen-types.mjs';
import { missingServer } from '../test-support/roster.mjs';

const missing = missingServer();
if (missing && process.env.CI === 'true') throw new Error(missing);
const skip = missing ? `skipped: ${missing}` : false;

test('src/generated/openapi.ts matches the server\'s OpenAPI document', { skip, timeout: 60_000 }, async () => {
  const fresh = await generate(await fetchDocument());
  const dir = mkdtempSync(join(tmpdir(), 'roster-sdk-gen-'));
  try {
    const tmp = join(dir, 'openapi.ts');
    writeFileSync(tmp, fresh);
    const committed = readFileSync(GENERATED_FILE, 'utf8');
    if (committed === fresh) return;
    const a = committed.split('\n');
    const b = fresh.split('\n');
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    assert.fail(
      `${relative(packageRoot, GENERATED_FILE)} is out of date with the server's OpenAPI document: ` +
        `run \`npm run gen:types\` in clients/typescript (after \`cargo build --bins\`) and commit the result.\n` +
        `First difference at line ${i + 1}:\n  committed: ${JSON.stringify(a[i] ?? '<end of file>')}\n` +
        `  generated: ${JSON.stringify(b[i] ?? '<end of file>')}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
