#!/usr/bin/env node
// A license client for an lm pool, written from docs/PROTOCOL.md alone (Node.js >= 18,
// no dependencies). It holds `count` seats of one license: asks, heartbeats, fails over
// in leader-priority order with its ticket, and releases on SIGINT / SIGTERM or after
// --seconds. One JSON line per event on stdout; see README.md.
'use strict';

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const tls = require('node:tls');
const crypto = require('node:crypto');
const { performance } = require('node:perf_hooks');

// PROTOCOL.md 2: frame kinds and caps
const KIND_CLIENT = 1;
const KIND_CLIENT_REPLY = 2;
const CAP_CLIENT = 8192;
const CAP_CLIENT_REPLY = 65536;
// PROTOCOL.md 5
const FINAL = new Set(['unknown_license', 'expired', 'bad_request', 'reclaimed']);
const TRANSIENT = new Set(['no_majority', 'restart_grace', 'no_seats']);
const RETRY_FLOOR = 0.25;
const BACKOFF = 0.5;
const PENDING_MAX = 16;

const now = () => performance.now() / 1000;

function emit(event) {
  process.stdout.write(JSON.stringify({ t: Number(now().toFixed(3)), ...event }) + '\n');
}

function usage(message) {
  process.stderr.write(`lm-client: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { servers: [], count: 1, answerTimeout: 1.0, seconds: null };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${flag} needs a value`);
      return argv[++i];
    };
    switch (flag) {
      case '--pool': opts.pool = value(); break;
      case '--license': opts.license = value(); break;
      case '--count': opts.count = Number.parseInt(value(), 10); break;
      case '--client-id': opts.clientId = value(); break;
      case '--prefer': opts.prefer = value(); break;
      case '--ca': opts.ca = value(); break;
      case '--cert': opts.cert = value(); break;
      case '--key': opts.key = value(); break;
      case '--insecure-loopback': opts.plaintext = true; break;
      case '--seconds': opts.seconds = Number.parseFloat(value()); break;
      case '--answer-timeout': opts.answerTimeout = Number.parseFloat(value()); break;
      case '--server': {
        const text = value();
        const eq = text.indexOf('=');
        if (eq < 1) usage(`--server wants ID=host:port, not ${JSON.stringify(text)}`);
        opts.servers.push({ id: text.slice(0, eq), address: text.slice(eq + 1) });
        break;
      }
      default: usage(`unknown option ${flag}`);
    }
  }
  if (!opts.pool) usage('--pool is required');
  if (!opts.license) usage('--license is required');
  if (!opts.servers.length) usage('at least one --server ID=host:port is required');
  if (!(opts.count >= 1 && opts.count <= 1000000)) usage('--count must be 1..1000000');
  if (!opts.ca && !opts.plaintext) usage('--ca (the pool CA) is required, or --insecure-loopback');
  if (opts.prefer && !opts.servers.some((s) => s.id === opts.prefer)) usage(`no server ${opts.prefer}`);
  // PROTOCOL.md 3.1: a client id is printable ASCII, at most 300 characters, one per process
  opts.clientId = opts.clientId
    || `${os.hostname()}:${process.pid}:${crypto.randomBytes(3).toString('hex')}`.slice(0, 300);
  return opts;
}

function splitAddress(address) {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(address) || /^([^:]+):(\d+)$/.exec(address);
  if (!m) throw new Error(`bad address ${address}`);
  return { host: m[1], port: Number(m[2]) };
}

// One connection to one server (PROTOCOL.md 1): TLS 1.3, only the pool CA trusted, the
// server's certificate checked against the address dialled; frames in both directions.
class Link {
  constructor(owner, sid, address) {
    this.owner = owner;
    this.sid = sid;
    this.buf = Buffer.alloc(0);
    this.dead = false;
    const { host, port } = splitAddress(address);
    const o = owner.opts;
    if (o.plaintext) {
      if (!['127.0.0.1', '::1', 'localhost'].includes(host)) {
        throw new Error(`plaintext only on loopback, not ${host}`);
      }
      this.sock = net.connect({ host, port });
    } else {
      this.sock = tls.connect({
        host,
        port,
        ca: [fs.readFileSync(o.ca)],
        cert: o.cert ? fs.readFileSync(o.cert) : undefined,
        key: o.key ? fs.readFileSync(o.key) : undefined,
        minVersion: 'TLSv1.3',
        servername: net.isIP(host) ? undefined : host,
        rejectUnauthorized: true,
      });
    }
    this.sock.setNoDelay(true);
    this.sock.on('data', (chunk) => this.onData(chunk));
    this.sock.on('error', (err) => this.lost(err.message));
    this.sock.on('close', () => this.lost('connection closed'));
  }

  send(msg) {
    const body = Buffer.from(JSON.stringify(msg), 'utf8');
    if (body.length === 0 || body.length > CAP_CLIENT) throw new Error('message over the frame cap');
    const head = Buffer.alloc(5);
    head.writeUInt8(KIND_CLIENT, 0);
    head.writeUInt32BE(body.length, 1);
    this.sock.write(Buffer.concat([head, body]));
  }

  onData(chunk) {
    this.buf = Buffer.concat([this.buf, chunk]);
    while (!this.dead && this.buf.length >= 5) {
      const kind = this.buf.readUInt8(0);
      const n = this.buf.readUInt32BE(1);
      if (kind !== KIND_CLIENT_REPLY || n === 0 || n > CAP_CLIENT_REPLY) {
        this.close(`bad frame from ${this.sid} (kind ${kind}, ${n} bytes)`);
        return;
      }
      if (this.buf.length < 5 + n) return;
      const body = this.buf.subarray(5, 5 + n);
      this.buf = this.buf.subarray(5 + n);
      let msg;
      try {
        msg = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
      } catch (err) {
        this.close(`bad message from ${this.sid}: ${err.message}`);
        return;
      }
      if (!msg || typeof msg !== 'object' || !Number.isInteger(msg.request_id)
          || !['Authorize', 'Deny', 'Released'].includes(msg.type)) {
        this.close(`unexpected message from ${this.sid}`);
        return;
      }
      this.owner.onMessage(this.sid, msg);
    }
  }

  destroy() {
    this.dead = true;
    this.sock.end();
    this.sock.destroy();
  }

  close(why) {
    if (!this.dead) {
      this.sock.destroy();
      this.lost(why);
    }
  }

  lost(why) {
    if (this.dead) return;
    this.dead = true;
    this.sock.destroy();
    this.owner.onLinkLost(this, why);
  }
}

// The client's rules (PROTOCOL.md 4).
class Client {
  // `io` replaces the clock, the output, the connections and the exit (a test's replay):
  // { now(), emit(event), connect(client, sid, address) -> { send(msg), dead, destroy() },
  //   finish(code) }; timers go through at() / cancel(), which a replay may replace too.
  constructor(opts, io = {}) {
    this.opts = opts;
    this.now = io.now || now;
    this.emit = io.emit || emit;
    this.connect = io.connect || ((client, sid, address) => new Link(client, sid, address));
    this.exit = io.finish || ((code) => {
      process.exitCode = code;
      setImmediate(() => process.exit(code));
    });
    this.servers = opts.servers.slice(); // leader-priority order; replaced by each Authorize
    this.home = opts.prefer || this.servers[0].id;
    this.state = 'idle'; // idle | requesting | holding | failover | waiting
    this.nextId = 1; // 4.1: one counter, +1 per message sent, any server
    this.pending = new Map(); // request_id -> { sentAt, sid }
    this.waitingId = null; // the id whose answer is awaited
    this.server = null; // holding (or being asked)
    this.leaseEnd = null; // own clock; null = believes nothing
    this.ticket = '';
    this.ticketUntil = 0;
    this.hbInterval = 2.0;
    this.leaseLength = 0;
    this.walk = [];
    this.walkFailover = false;
    this.failed = null;
    this.gaveUpAt = 0;
    this.retryHint = 0;
    this.lastDeny = null;
    this.links = new Map();
    this.timers = {};
    this.releasedIds = new Set();
    this.onReleased = null;
  }

  // -- timers (one of each kind at a time)
  at(name, when, fn) {
    clearTimeout(this.timers[name]);
    this.timers[name] = setTimeout(() => { delete this.timers[name]; fn(); },
      Math.max(0, Math.ceil((when - this.now()) * 1000)));
  }

  cancel(name) {
    clearTimeout(this.timers[name]);
    delete this.timers[name];
  }

  // -- sending
  link(sid) {
    let link = this.links.get(sid);
    if (link && !link.dead) return link;
    const entry = this.servers.find((s) => s.id === sid);
    link = this.connect(this, sid, entry.address);
    this.links.set(sid, link);
    return link;
  }

  base(type) {
    return { type, pool: this.opts.pool, sender: this.opts.clientId, term: 0 };
  }

  send(sid, build) {
    const rid = this.nextId++;
    const msg = build(rid);
    this.pending.set(rid, { sentAt: this.now(), sid });
    if (this.pending.size > PENDING_MAX) this.pending.delete(Math.min(...this.pending.keys()));
    try {
      this.link(sid).send(msg);
    } catch (err) {
      // unreachable at once: handled like a missing answer, after this call returns
      setImmediate(() => this.noAnswer(sid, rid, err.message));
    }
    return rid;
  }

  ask(sid, rid, timeout) {
    this.waitingId = rid;
    this.at('answer', this.now() + timeout, () => this.noAnswer(sid, rid, 'no answer in time'));
  }

  request(rid) {
    return { ...this.base('Request'), request_id: rid, license: this.opts.license, count: this.opts.count };
  }

  heartbeat(rid, failover) {
    return {
      ...this.base('ClientHeartbeat'),
      request_id: rid,
      license: this.opts.license,
      count: this.opts.count,
      failover,
      ticket: failover ? this.ticket : '',
    };
  }

  // -- 4.2 / 4.4: walks
  start() {
    this.state = 'requesting';
    this.beginWalk(false);
    this.askNext();
  }

  beginWalk(failover) {
    const ids = this.servers.map((s) => s.id);
    if (failover) {
      const first = this.failed;
      this.walk = ids.filter((id) => id !== first).concat(ids.includes(first) ? [first] : []);
    } else {
      this.walk = [this.home].concat(ids.filter((id) => id !== this.home));
    }
    this.walkFailover = failover;
    this.retryHint = 0;
  }

  askNext() {
    if (!this.walk.length) {
      this.walkExhausted();
      return;
    }
    const sid = this.walk.shift();
    this.server = sid;
    const failover = this.walkFailover;
    const rid = this.send(sid, (id) => (failover ? this.heartbeat(id, true) : this.request(id)));
    this.emit({ event: 'ask', server: sid, request_id: rid, failover, ticket: failover && this.ticket !== '' });
    this.ask(sid, rid, this.opts.answerTimeout);
  }

  claiming() {
    return this.leaseEnd !== null || (this.ticket !== '' && this.now() < this.ticketUntil);
  }

  walkExhausted() {
    this.waitingId = null;
    this.cancel('answer');
    const deny = this.lastDeny || { reason: 'no_seats', detail: '' };
    this.emit({ event: 'denied', reason: deny.reason, detail: deny.detail, final: false });
    this.state = 'waiting';
    let delay;
    if (this.claiming()) {
      delay = Math.max(RETRY_FLOOR, Math.min(this.retryHint || BACKOFF, this.hbInterval / 4));
    } else {
      delay = Math.max(this.retryHint, BACKOFF);
    }
    this.at('retry', this.now() + delay, () => {
      const failover = this.claiming();
      this.state = failover ? 'failover' : 'requesting';
      this.beginWalk(failover);
      this.askNext();
    });
  }

  enterFailover(why) {
    this.emit({ event: 'failover', from: this.server, why });
    this.state = 'failover';
    this.cancel('heartbeat');
    this.failed = this.server;
    this.gaveUpAt = this.nextId; // a later answer from the failed server to an older id is ignored
    this.beginWalk(true);
    this.askNext();
  }

  // -- 4.3: holding
  sendHeartbeat() {
    if (this.state !== 'holding') return;
    const sid = this.server;
    const rid = this.send(sid, (id) => this.heartbeat(id, false));
    this.ask(sid, rid, Math.min(this.opts.answerTimeout, this.hbInterval));
    this.at('heartbeat', this.now() + this.hbInterval, () => this.sendHeartbeat());
  }

  noAnswer(sid, rid, why) {
    if (rid !== this.waitingId) return;
    this.waitingId = null;
    this.cancel('answer');
    const link = this.links.get(sid);
    if (link) { // 4.5: a connection whose ask went unanswered is dialled afresh next time
      this.links.delete(sid);
      link.destroy();
    }
    if (this.state === 'holding') {
      this.enterFailover(`${sid}: ${why}`);
      return;
    }
    this.lastDeny = this.lastDeny || { reason: 'unreachable', detail: `${sid}: ${why}` };
    if (this.state === 'requesting' || this.state === 'failover') this.askNext();
  }

  onLinkLost(link, why) {
    if (this.links.get(link.sid) === link) this.links.delete(link.sid);
    const waiting = this.pending.get(this.waitingId);
    if (waiting && waiting.sid === link.sid) this.noAnswer(link.sid, this.waitingId, why);
  }

  onMessage(sid, msg) {
    if (msg.type === 'Released') {
      this.releasedIds.add(msg.request_id);
      if (this.onReleased) this.onReleased();
      return;
    }
    if (msg.license !== this.opts.license) return;
    if (msg.type === 'Authorize') this.onAuthorize(sid, msg);
    else if (msg.type === 'Deny') this.onDeny(sid, msg);
  }

  onAuthorize(sid, msg) {
    const sent = this.pending.get(msg.request_id);
    if (!sent) return;
    if (sid === this.failed && msg.request_id < this.gaveUpAt) return; // its seat may have moved
    if (this.state === 'idle') { // a grant after we let go: give it straight back
      this.pending.delete(msg.request_id);
      this.send(sid, (id) => ({ ...this.base('Release'), request_id: id, license: this.opts.license }));
      return;
    }
    const t = this.now();
    const expires = sent.sentAt + msg.lease; // 4.3: from the send time
    if (expires <= t) return;
    if (this.leaseEnd === null || expires > this.leaseEnd) this.leaseEnd = expires;
    if (Array.isArray(msg.servers) && msg.servers.length) {
      this.servers = msg.servers.map((s) => ({ id: s.id, address: s.address }));
    }
    if (msg.ticket) {
      this.ticket = msg.ticket;
      this.ticketUntil = this.leaseEnd + msg.lease;
    }
    if (msg.heartbeat_interval > 0) this.hbInterval = msg.heartbeat_interval;
    this.leaseLength = msg.lease;
    const was = this.state;
    const renewed = was === 'holding' && this.server === sid;
    this.state = 'holding';
    this.server = sid;
    this.walk = [];
    this.lastDeny = null;
    this.cancel('retry');
    if (msg.request_id === this.waitingId || was !== 'holding') {
      this.waitingId = null;
      this.cancel('answer');
    }
    if (was !== 'holding' || !this.timers.heartbeat) {
      this.at('heartbeat', sent.sentAt + this.hbInterval, () => this.sendHeartbeat());
    }
    this.at('lease', this.leaseEnd, () => this.leaseRanOut());
    this.emit({
      event: renewed ? 'renewed' : 'authorized',
      server: sid,
      count: msg.count,
      request_id: msg.request_id,
      lease_expires_in: Number((this.leaseEnd - t).toFixed(3)),
    });
  }

  leaseRanOut() {
    if (this.leaseEnd === null) return;
    if (this.now() < this.leaseEnd) { // a timer may fire a fraction of a millisecond early
      this.at('lease', this.leaseEnd, () => this.leaseRanOut());
      return;
    }
    this.leaseEnd = null;
    this.emit({ event: 'lost', reason: 'lease expired' });
    if (this.state === 'holding') this.enterFailover('lease expired');
  }

  onDeny(sid, msg) {
    if (msg.request_id !== this.waitingId) return; // only the awaited answer moves us
    this.waitingId = null;
    this.cancel('answer');
    this.lastDeny = { reason: msg.reason, detail: msg.detail };
    this.retryHint = Math.max(this.retryHint, msg.retry_after || 0);
    this.emit({ event: 'deny', server: sid, reason: msg.reason, detail: msg.detail });
    if (FINAL.has(msg.reason)) {
      const held = this.leaseEnd !== null;
      this.stopAll();
      if (held) this.emit({ event: 'lost', reason: msg.reason });
      this.emit({ event: 'denied', server: sid, reason: msg.reason, detail: msg.detail, final: true });
      this.finish(1);
      return;
    }
    if (this.state === 'holding') {
      if (TRANSIENT.has(msg.reason) && this.leaseEnd !== null) {
        const latest = this.leaseEnd - (this.hbInterval + this.opts.answerTimeout);
        const t = this.now();
        if (latest >= t + RETRY_FLOOR) {
          const again = Math.min(t + Math.max(msg.retry_after || 0, RETRY_FLOOR), latest);
          this.at('heartbeat', again, () => this.sendHeartbeat());
          return;
        }
      }
      this.enterFailover(`${sid}: ${msg.reason}`);
      return;
    }
    if (this.state === 'requesting' || this.state === 'failover') this.askNext();
  }

  stopAll() {
    for (const name of Object.keys(this.timers)) this.cancel(name);
    this.state = 'idle';
    this.leaseEnd = null;
    this.waitingId = null;
  }

  // -- 4.6: release
  release() {
    const sid = this.server;
    const held = this.leaseEnd !== null || this.pending.size > 0;
    this.stopAll();
    if (!sid || !held) {
      this.finish(0);
      return;
    }
    const rid = this.send(sid, (id) => ({ ...this.base('Release'), request_id: id, license: this.opts.license }));
    const done = () => {
      this.emit({ event: 'released', server: sid, request_id: rid, answered: this.releasedIds.has(rid) });
      this.finish(0);
    };
    this.onReleased = () => { if (this.releasedIds.has(rid)) done(); };
    this.at('release', this.now() + 1.0, done);
  }

  finish(code) {
    for (const name of Object.keys(this.timers)) this.cancel(name);
    for (const link of this.links.values()) link.destroy();
    this.links.clear();
    this.exit(code);
  }
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const client = new Client(opts);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    client.release();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  if (opts.seconds !== null) setTimeout(stop, opts.seconds * 1000);
  emit({ event: 'start', client_id: opts.clientId, license: opts.license, count: opts.count });
  client.start();
}

if (require.main === module) main();
module.exports = { Client, parseArgs };
