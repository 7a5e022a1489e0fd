#!/usr/bin/env node
// A third-party A2A 1.0 agent built on the official JavaScript SDK (@a2a-js/sdk, installed under
// tests/npm). Interlink's cross-vendor tests run it as a real JS peer.
//
//   node tests/a2a_js/agent.mjs --port 0 [--legacy-compat]    # port 0 = pick a free port
//
// Binds 127.0.0.1 and prints exactly one line `LISTENING http://127.0.0.1:<port>` when ready.
// Card at /.well-known/agent-card.json; JSON-RPC at /a2a/jsonrpc, HTTP+JSON at /a2a/rest (A2A 1.0).
// --legacy-compat also serves A2A 0.3 (the SDK's opt-in compat layer) on the same endpoints: the card
// adds 0.3 interfaces, and a card request without `A2A-Version: 1.0` gets the 0.3-shaped card.
// Behaviour is keyed on the user's text (the same as tests/a2a_py_agent.py):
//   "echo <text>"  completes at once: artifact "<text>", status message "done".
//   "stream <n>"   n steps ~50 ms apart, each a WORKING status update plus an artifact chunk
//                  "chunk <i>" (one artifact, appended); then completes.
//   "slow"         works until CancelTask (-> CANCELED); gives up by itself after 120 s.
//   "ask"          INPUT_REQUIRED "what is your name?"; the next message on that task (or, without a
//                  task id, on that context) completes with artifact and message "thanks, <answer>".
//   "fail"         ends FAILED with message "failed on purpose".
//   anything else  completes with artifact "unknown command: <text>".

import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

// The SDK and express live in tests/npm/node_modules (npm ci --prefix tests/npm); resolve them from
// there through the packages' own "exports" maps.
const require = createRequire(new URL('../npm/package.json', import.meta.url));
const express = require('express');
const { Role, TaskState } = require('@a2a-js/sdk');
const {
  AgentEvent,
  DefaultExecutionEventBusManager,
  DefaultPushNotificationSender,
  DefaultRequestHandler,
  InMemoryPushNotificationStore,
  InMemoryTaskStore,
} = require('@a2a-js/sdk/server');
const { agentCardHandler, jsonRpcHandler, restHandler, UserBuilder } = require('@a2a-js/sdk/server/express');

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    'legacy-compat': { type: 'boolean', default: false },
  },
});
const legacyCompat = { enabled: args['legacy-compat'] };

const textPart = (text) => ({
  content: { $case: 'text', value: text },
  metadata: {},
  filename: '',
  mediaType: 'text/plain',
});

const agentMessage = (text, taskId, contextId) => ({
  messageId: randomUUID(),
  contextId,
  taskId,
  role: Role.ROLE_AGENT,
  parts: [textPart(text)],
  metadata: {},
  extensions: [],
  referenceTaskIds: [],
});

const userText = (message) =>
  (message?.parts ?? [])
    .map((p) => (p.content?.$case === 'text' ? p.content.value : ''))
    .join('')
    .trim();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class HelpdeskExecutor {
  /** taskId -> resolve(), for tasks that CancelTask may interrupt. */
  #cancellers = new Map();
  /** contextIds whose last task is waiting for an answer to "ask". */
  #askingContexts = new Set();
  /** taskId -> contextId of every task seen (cancelTask is given only the task id). */
  #contextOf = new Map();

  async execute(ctx, bus) {
    const { taskId, contextId } = ctx;
    const text = userText(ctx.userMessage);
    this.#contextOf.set(taskId, contextId);
    const emit = {
      status: (state, message) =>
        bus.publish(
          AgentEvent.statusUpdate({
            taskId,
            contextId,
            status: {
              state,
              message: message === undefined ? undefined : agentMessage(message, taskId, contextId),
              timestamp: new Date().toISOString(),
            },
            metadata: {},
          }),
        ),
      artifact: (text, { id = 'result', name = 'result', append = false, lastChunk = true } = {}) =>
        bus.publish(
          AgentEvent.artifactUpdate({
            taskId,
            contextId,
            artifact: { artifactId: id, name, description: '', parts: [textPart(text)], metadata: {}, extensions: [] },
            append,
            lastChunk,
            metadata: {},
          }),
        ),
    };

    // Every execute() must publish a Task (or a Message) first, follow-up turns included.
    const existing = ctx.task;
    bus.publish(
      AgentEvent.task(
        existing ?? {
          id: taskId,
          contextId,
          status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: new Date().toISOString() },
          artifacts: [],
          history: [ctx.userMessage],
          metadata: {},
        },
      ),
    );

    const answering =
      existing?.status?.state === TaskState.TASK_STATE_INPUT_REQUIRED ||
      (!existing && this.#askingContexts.has(contextId) && text !== 'ask');
    if (answering) {
      this.#askingContexts.delete(contextId);
      const reply = `thanks, ${text}`;
      emit.artifact(reply);
      emit.status(TaskState.TASK_STATE_COMPLETED, reply);
      return;
    }

    emit.status(TaskState.TASK_STATE_WORKING, 'working');
    const [command, ...rest] = text.split(/\s+/);
    const argument = rest.join(' ');

    switch (command) {
      case 'echo':
        emit.artifact(argument, { id: 'echo', name: 'echo' });
        emit.status(TaskState.TASK_STATE_COMPLETED, 'done');
        return;
      case 'stream': {
        const n = Math.max(1, Math.min(Number.parseInt(argument, 10) || 3, 1000));
        for (let i = 1; i <= n; i++) {
          await sleep(50);
          emit.status(TaskState.TASK_STATE_WORKING, `step ${i} of ${n}`);
          emit.artifact(`chunk ${i}`, { id: 'stream', name: 'stream', append: i > 1, lastChunk: i === n });
        }
        emit.status(TaskState.TASK_STATE_COMPLETED, `streamed ${n}`);
        return;
      }
      case 'slow': {
        const cancelled = new Promise((resolve) => this.#cancellers.set(taskId, resolve));
        const outcome = await Promise.race([cancelled.then(() => 'cancelled'), sleep(120_000).then(() => 'timeout')]);
        this.#cancellers.delete(taskId);
        if (outcome === 'timeout') emit.status(TaskState.TASK_STATE_FAILED, 'slow task gave up after 120 s');
        return; // on cancel, cancelTask() published CANCELED
      }
      case 'ask':
        this.#askingContexts.add(contextId);
        emit.status(TaskState.TASK_STATE_INPUT_REQUIRED, 'what is your name?');
        return;
      case 'fail':
        emit.status(TaskState.TASK_STATE_FAILED, 'failed on purpose');
        return;
      default:
        emit.artifact(`unknown command: ${text}`);
        emit.status(TaskState.TASK_STATE_COMPLETED, 'done');
    }
  }

  async cancelTask(taskId, bus) {
    const contextId = this.#contextOf.get(taskId) ?? '';
    bus.publish(
      AgentEvent.statusUpdate({
        taskId,
        contextId,
        status: {
          state: TaskState.TASK_STATE_CANCELED,
          message: agentMessage('cancelled', taskId, contextId),
          timestamp: new Date().toISOString(),
        },
        metadata: {},
      }),
    );
    this.#cancellers.get(taskId)?.();
  }
}

function agentCard(base) {
  const interfaces = [
    { url: `${base}/a2a/jsonrpc`, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '1.0' },
    { url: `${base}/a2a/rest`, protocolBinding: 'HTTP+JSON', tenant: '', protocolVersion: '1.0' },
  ];
  if (legacyCompat.enabled) {
    // The SDK's v0.3 layer answers on the same endpoints; the card must list a 0.3 interface per binding.
    interfaces.push(...interfaces.map((i) => ({ ...i, protocolVersion: '0.3' })));
  }
  return {
    name: 'js-helpdesk',
    description: 'A JavaScript (@a2a-js/sdk) test agent: echo, stream, slow (cancellable), ask, fail.',
    supportedInterfaces: interfaces,
    provider: { organization: 'Interlink tests', url: 'https://example.invalid/interlink' },
    version: '1.0.0',
    capabilities: { streaming: true, pushNotifications: true, extensions: [], extendedAgentCard: false },
    securitySchemes: {},
    securityRequirements: [],
    defaultInputModes: ['text/plain'],
    defaultOutputModes: ['text/plain'],
    skills: [
      skill('echo', 'Echo', 'Completes at once with the text after "echo" as an artifact.', ['echo', 'blocking'], 'echo hello'),
      skill('stream', 'Stream', 'Emits n progress updates and artifact chunks ~50 ms apart.', ['stream', 'sse'], 'stream 5'),
      skill('slow', 'Slow', 'Works until cancelled.', ['cancel', 'long-running'], 'slow'),
      skill('ask', 'Ask', 'Asks a question (input-required), then thanks you for the answer.', ['multi-turn'], 'ask'),
      skill('fail', 'Fail', 'Ends the task FAILED.', ['error'], 'fail'),
    ],
    signatures: [],
  };
}

function skill(id, name, description, tags, example) {
  return {
    id,
    name,
    description,
    tags,
    examples: [example],
    inputModes: ['text/plain'],
    outputModes: ['text/plain'],
    securityRequirements: [],
  };
}

const app = express();
const server = app.listen(Number(args.port), args.host, () => {
  const { port } = server.address();
  const base = `http://${args.host}:${port}`;
  const card = agentCard(base);
  const pushStore = new InMemoryPushNotificationStore();
  const handler = new DefaultRequestHandler(
    card,
    new InMemoryTaskStore(),
    new HelpdeskExecutor(),
    new DefaultExecutionEventBusManager(),
    pushStore,
    new DefaultPushNotificationSender(pushStore),
  );
  const userBuilder = UserBuilder.noAuthentication;
  app.use('/.well-known/agent-card.json', agentCardHandler({ agentCardProvider: handler, legacyCompat }));
  app.use('/a2a/jsonrpc', jsonRpcHandler({ requestHandler: handler, userBuilder, legacyCompat }));
  app.use('/a2a/rest', restHandler({ requestHandler: handler, userBuilder, legacyCompat }));
  process.stdout.write(`LISTENING ${base}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.closeAllConnections?.();
    server.close(() => process.exit(0));
  });
}
