// Replays tests/protocol/vectors/client_rules.json against contrib/node-client's Client
// on a virtual clock, with connections that record what is sent. Prints one line per
// mismatch and exits 1 if there is any, else prints "ok" and exits 0.
// Usage: node node_client_rules.js <client_rules.json>
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { isDeepStrictEqual } = require('node:util');

const { Client } = require(path.join(__dirname, '..', '..', 'contrib', 'node-client', 'lm-client.js'));

const vector = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const cfg = vector.client;
let clock = 0;
const timers = new Map(); // name -> { when, fn }
let sent = [];
const problems = [];

const client = new Client(
  {
    pool: cfg.pool,
    license: cfg.license,
    count: cfg.count,
    clientId: cfg.client_id,
    prefer: cfg.home,
    answerTimeout: cfg.answer_timeout,
    servers: cfg.servers.map((s) => ({ id: s.id, address: s.address })),
  },
  {
    now: () => clock,
    emit: () => {},
    connect: (owner, sid) => ({
      dead: false,
      send(msg) { sent.push({ to: sid, message: msg }); },
      destroy() { this.dead = true; },
    }),
    finish: () => {},
  },
);
client.at = (name, when, fn) => timers.set(name, { when, fn });
client.cancel = (name) => timers.delete(name);

function runDue(upTo) {
  for (;;) {
    let next = null;
    for (const [name, t] of timers) {
      if (t.when <= upTo + 1e-9 && (next === null || t.when < next[1].when)) next = [name, t];
    }
    if (next === null) return;
    timers.delete(next[0]);
    next[1].fn();
  }
}

vector.steps.forEach((step, i) => {
  const where = `step ${i} at ${step.at} (${step.note || ''})`;
  for (const [name, t] of timers) {
    if (t.when < step.at - 1e-9) problems.push(`${where}: timer ${name} was due at ${t.when}`);
  }
  clock = step.at;
  sent = [];
  if (step.receive) {
    client.onMessage(step.receive.from, step.receive.message);
    runDue(clock);
  } else if (step.do === 'acquire') {
    client.start();
  } else if (step.do === 'tick') {
    runDue(clock);
  } else if (step.do === 'release') {
    client.release();
  }
  if (!isDeepStrictEqual(sent, step.sends)) {
    problems.push(`${where}: sent ${JSON.stringify(sent)}, expected ${JSON.stringify(step.sends)}`);
  }
  if ('holds_until' in step) {
    const want = step.holds_until;
    const got = client.leaseEnd;
    if (want === null ? got !== null : (got === null || Math.abs(got - want) > 1e-6)) {
      problems.push(`${where}: lease end ${got}, expected ${want}`);
    }
  }
  if ('server' in step && client.server !== step.server) {
    problems.push(`${where}: server ${client.server}, expected ${step.server}`);
  }
});

if (problems.length) {
  for (const p of problems) process.stdout.write(p + '\n');
  process.exit(1);
}
process.stdout.write('ok\n');
