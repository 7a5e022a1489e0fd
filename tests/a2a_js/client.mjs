#!/usr/bin/env node
// A third-party A2A 1.0 client CLI built on the official JavaScript SDK (@a2a-js/sdk, installed under
// tests/npm). Tests use it to drive a Python agent, or Interlink, from JavaScript.
//
//   node tests/a2a_js/client.mjs --url <base-url | agent-card-url> --text "echo hi"
//        [--stream] [--token T] [--task-id ID] [--context-id ID] [--timeout-ms 30000] [--legacy-compat]
//
// --url        a base URL (the card is fetched from <url>/.well-known/agent-card.json) or the full
//              URL of a card (anything ending in .json).
// --token      sent as `Authorization: Bearer T` on every request, the card fetch included.
// --stream     SendStreamingMessage (SSE) instead of the blocking SendMessage.
// --legacy-compat  let the SDK pick its v0.3 transport when the card is a 0.3 card.
//
// Prints exactly one JSON line on stdout and exits 0:
//   {"kind":"task","taskId":…,"contextId":…,"state":"TASK_STATE_COMPLETED","statusMessage":"done",
//    "artifacts":["hi"],"protocolVersion":"1.0","events":7,"eventKinds":["task","statusUpdate",…]}
// (`events`/`eventKinds` only with --stream; "kind":"message" with "text" for a message reply.)
// On failure prints {"error": "<message>", "type": "<error class, e.g. TaskNotFoundError>"} and exits 1.

import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const require = createRequire(new URL('../npm/package.json', import.meta.url));
const { SendMessageRequest, taskStateToJSON } = require('@a2a-js/sdk');
const {
  ClientFactory,
  ClientFactoryOptions,
  DefaultAgentCardResolver,
  JsonRpcTransportFactory,
  RestTransportFactory,
} = require('@a2a-js/sdk/client');

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    text: { type: 'string' },
    token: { type: 'string' },
    stream: { type: 'boolean', default: false },
    'task-id': { type: 'string' },
    'context-id': { type: 'string' },
    'timeout-ms': { type: 'string', default: '30000' },
    'legacy-compat': { type: 'boolean', default: false },
  },
});

if (!args.url || args.text === undefined) {
  process.stderr.write('usage: client.mjs --url URL --text TEXT [--stream] [--token T]\n');
  process.exit(2);
}

/** `fetch` that adds the bearer token to every request (card, JSON-RPC, REST, SSE). */
const authFetch = (input, init = {}) => {
  if (!args.token) return fetch(input, init);
  const headers = new Headers(init.headers);
  headers.set('Authorization', `Bearer ${args.token}`);
  return fetch(input, { ...init, headers });
};

const textOf = (parts) =>
  (parts ?? [])
    .map((p) => (p.content?.$case === 'text' ? p.content.value : ''))
    .join('');

async function main() {
  const legacyCompat = { enabled: args['legacy-compat'] };
  const factory = new ClientFactory(
    ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
      transports: [
        new JsonRpcTransportFactory({ fetchImpl: authFetch, legacyCompat }),
        new RestTransportFactory({ fetchImpl: authFetch, legacyCompat }),
      ],
      cardResolver: new DefaultAgentCardResolver({ fetchImpl: authFetch, legacyCompat }),
    }),
  );
  const cardUrl = /\.json($|\?)/.test(args.url);
  const client = cardUrl ? await factory.createFromUrl(args.url, '') : await factory.createFromUrl(args.url);

  const request = SendMessageRequest.fromJSON({
    message: {
      messageId: randomUUID(),
      role: 'ROLE_USER',
      parts: [{ text: args.text, mediaType: 'text/plain' }],
      ...(args['task-id'] ? { taskId: args['task-id'] } : {}),
      ...(args['context-id'] ? { contextId: args['context-id'] } : {}),
    },
  });
  const options = { signal: AbortSignal.timeout(Number(args['timeout-ms'])) };
  const out = { protocolVersion: client.protocolVersion };

  if (!args.stream) {
    const result = await client.sendMessage(request, options);
    if ('messageId' in result) return { kind: 'message', text: textOf(result.parts), contextId: result.contextId, ...out };
    return { ...taskSummary(result), ...out };
  }

  // Streaming: fold the events into a task view, keeping count of what arrived.
  const eventKinds = [];
  let task;
  const artifacts = new Map(); // artifactId -> text, in arrival order
  for await (const event of client.sendMessageStream(request, options)) {
    const payload = event.payload;
    if (!payload) continue;
    eventKinds.push(payload.$case);
    const value = payload.value;
    switch (payload.$case) {
      case 'message':
        return { kind: 'message', text: textOf(value.parts), contextId: value.contextId, events: 1, eventKinds, ...out };
      case 'task':
        task = value;
        for (const a of value.artifacts ?? []) artifacts.set(a.artifactId, textOf(a.parts));
        break;
      case 'statusUpdate':
        task = { ...(task ?? { id: value.taskId, contextId: value.contextId }), status: value.status };
        break;
      case 'artifactUpdate': {
        const a = value.artifact;
        const before = value.append ? (artifacts.get(a.artifactId) ?? '') : '';
        artifacts.set(a.artifactId, before + textOf(a.parts));
        break;
      }
    }
  }
  if (!task) throw new Error('the stream ended without a task');
  return {
    ...taskSummary({ ...task, artifacts: [] }),
    artifacts: [...artifacts.values()],
    events: eventKinds.length,
    eventKinds,
    ...out,
  };
}

function taskSummary(task) {
  return {
    kind: 'task',
    taskId: task.id,
    contextId: task.contextId,
    state: taskStateToJSON(task.status?.state ?? 0),
    statusMessage: textOf(task.status?.message?.parts),
    artifacts: (task.artifacts ?? []).map((a) => textOf(a.parts)),
  };
}

try {
  process.stdout.write(`${JSON.stringify(await main())}\n`);
} catch (error) {
  const type = error?.constructor?.name ?? typeof error;
  process.stdout.write(`${JSON.stringify({ error: String(error?.message ?? error), type })}\n`);
  process.exitCode = 1;
}
