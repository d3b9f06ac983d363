// sikkerchat must never create a conversation that is not end-to-bridge
// encrypted: with encryption off in the config, the bridge refuses to start.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startStack } from './lib/localstack.mjs';

test('the bridge refuses to run with encryption turned off', async () => {
  await assert.rejects(
    startStack({ basePort: 28208, encryption: false }),
    /sikkerchat requires end-to-bridge encryption/,
  );
});
