// Event Hubs AMQP stand-in (rhea) for tests of the real azeventhubs SDK.
// Based on the tested stub of test-infrastructure.md §3. It answers $cbs
// put-token, $management READ for eventhub/partition, accepts sends (single
// messages and 0x80013700 batches) to "<hub>" and "<hub>/Partitions/<id>",
// and serves stored events to "<hub>/ConsumerGroups/<cg>/Partitions/<id>".
//
// Environment: PORT (0 = any), EH_NAME (hub name), EH_PARTITIONS (count),
// EH_MAX_MESSAGE_SIZE (the link's max-message-size, 1 MiB as Standard tier),
// EH_SAS_KEY (when set, put-token checks the SAS signature with this key and
// answers 401 on a mismatch, as Event Hubs does), EH_TOKEN (when set, the
// only Entra ID token put-token accepts), EH_TLS_CERT and EH_TLS_KEY (PEM
// files: listen with TLS, as the SDK needs with a token credential).
//
// Every served event carries, besides the usual x-opt-* annotations, two of
// the stub's own: x-opt-stub-arrival (global arrival number across all
// partitions) and x-opt-stub-transfer (number of the AMQP transfer, i.e. SDK
// batch, it came in), so a test can read back write order and batching.
const crypto = require('crypto');
const fs = require('fs');
const rhea = require('rhea');
const t = rhea.types;
const HUB = process.env.EH_NAME || 'hub1';
const PARTS = Array.from({ length: Number(process.env.EH_PARTITIONS || 2) }, (_, i) => String(i));
const MAX = Number(process.env.EH_MAX_MESSAGE_SIZE || 1048576);
const KEY = process.env.EH_SAS_KEY || '';
const TOKEN = process.env.EH_TOKEN || '';
const store = Object.fromEntries(PARTS.map(p => [p, []]));
const replyLinks = new Map(); // reply address -> server-side sender
const consumers = [];        // {sender, pid, next}
let rr = 0, arrival = 0, transfers = 0;

function reply(req, status, desc, body) {
  const s = replyLinks.get(req.reply_to);
  if (!s) { console.error('no reply link for', req.reply_to); return; }
  s.send({ correlation_id: req.message_id, to: req.reply_to,
    application_properties: { 'status-code': t.wrap_int(status), 'status-description': desc }, body });
}
function pump(c) {
  while (c.sender.sendable() && c.next < store[c.pid].length) {
    const e = store[c.pid][c.next++];
    const ann = { 'x-opt-sequence-number': t.wrap_long(e.seq), 'x-opt-offset': String(e.seq),
      'x-opt-enqueued-time': t.wrap_timestamp(e.ts), 'x-opt-stub-arrival': t.wrap_long(e.arrival),
      'x-opt-stub-transfer': t.wrap_long(e.transfer) };
    if (e.key !== undefined) ann['x-opt-partition-key'] = e.key;
    // Sent settled: the SDK's receivers never settle what they receive
    // (partition_client.go asks for no sender settle mode and accepts
    // nothing), so Event Hubs cannot be waiting for them to (INFERRED).
    // Unsettled, rhea would stop at 2048 deliveries in flight a session.
    c.sender.send({ body: e.body, application_properties: e.props, message_annotations: ann }).settled = true;
  }
}
// partitionFor maps a partition key to a partition, as the service hashes
// keys: the same key always lands in the same partition.
function partitionFor(key) {
  const h = crypto.createHash('sha256').update(key).digest();
  return PARTS[h.readUInt32BE(0) % PARTS.length];
}
function addEvent(pid, m, transfer) {
  const q = store[pid];
  const ann = m.message_annotations || {};
  q.push({ seq: q.length, ts: Date.now(), body: m.body, props: m.application_properties,
    key: ann['x-opt-partition-key'], arrival: arrival++, transfer });
  consumers.filter(c => c.pid === pid).forEach(pump);
}
// validToken checks a put-token request: an Entra ID token ("jwt") must
// equal TOKEN when set; a SharedAccessSignature is checked against KEY when
// set: sig = base64(HMAC-SHA256(key, sr + "\n" + se)).
function validToken(req) {
  const tok = req.body, type = (req.application_properties || {}).type;
  if (type === 'jwt') return !TOKEN || tok === TOKEN;
  if (!KEY) return true;
  const m = /^SharedAccessSignature (.*)$/.exec(String(tok || ''));
  if (!m) return false;
  const f = Object.fromEntries(m[1].split('&').map(kv => kv.split('=')));
  if (!f.sr || !f.sig || !f.se) return false;
  const want = crypto.createHmac('sha256', KEY).update(f.sr + '\n' + f.se).digest('base64');
  return decodeURIComponent(f.sig) === want;
}
const c = rhea.create_container({ id: 'eh-stub' });
function mirror(l) { // echo the peer's source/target back, else go-amqp treats the attach as a refusal
  const a = l.remote.attach;
  if (a.source) l.set_source({ address: a.source.address });
  if (a.target) l.set_target({ address: a.target.address });
  settle(l);
}
// refuse answers an attach to an unknown entity as Event Hubs does: an
// attach without source and target, then a detach with amqp:not-found.
function refuse(l, addr) {
  settle(l);
  l.close({ condition: 'amqp:not-found', description: `The messaging entity '${addr}' could not be found.` });
}
function settle(l) {
  const a = l.remote.attach;
  l.local.attach.snd_settle_mode = a.snd_settle_mode; // echo settlement modes too
  l.local.attach.rcv_settle_mode = a.rcv_settle_mode;
  l.local.attach.max_message_size = MAX; // SDK sizes batches from this (0 => every add fails)
}
function knownEntity(addr) {
  return addr === '$cbs' || addr === '$management' || addr === HUB + '/$management' ||
    new RegExp('^' + HUB + '(/Partitions/(' + PARTS.join('|') + '))?$').test(addr);
}
c.on('receiver_open', ctx => {
  const tgt = ctx.receiver.remote.attach.target && ctx.receiver.remote.attach.target.address;
  if (knownEntity(tgt)) mirror(ctx.receiver); else refuse(ctx.receiver, tgt);
});
c.on('sender_open', ctx => {
  const src = ctx.sender.remote.attach.source && ctx.sender.remote.attach.source.address;
  const tgt = ctx.sender.remote.attach.target && ctx.sender.remote.attach.target.address;
  if (src === '$cbs' || src === '$management' || src === HUB + '/$management') {
    mirror(ctx.sender); replyLinks.set(tgt, ctx.sender); return;
  }
  const m = /^([^/]+)\/ConsumerGroups\/[^/]+\/Partitions\/(\d+)$/.exec(src || '');
  if (m && m[1] === HUB && store[m[2]]) {
    mirror(ctx.sender);
    const cons = { sender: ctx.sender, pid: m[2], next: 0 }; consumers.push(cons); pump(cons);
  } else {
    refuse(ctx.sender, src);
  }
});
c.on('sendable', ctx => consumers.filter(x => x.sender === ctx.sender).forEach(pump));
c.on('message', ctx => {
  const tgt = ctx.receiver.remote.attach.target && ctx.receiver.remote.attach.target.address;
  const msg = ctx.message;
  if (tgt === '$cbs') {
    if (validToken(msg)) reply(msg, 202, 'Accepted', null);
    else reply(msg, 401, 'InvalidSignature: The token has an invalid signature.', null);
  } else if (tgt === '$management' || tgt === HUB + '/$management') {
    const ap = msg.application_properties || {};
    if (ap.name !== HUB) {
      reply(msg, 404, `The messaging entity '${ap.name}' could not be found.`, null);
    } else if (ap.type === 'com.microsoft:eventhub') {
      reply(msg, 200, 'OK', t.wrap_map({
        name: HUB, type: 'com.microsoft:eventhub', created_at: t.wrap_timestamp(Date.now()),
        partition_count: t.wrap_int(PARTS.length), georeplication_factor: t.wrap_long(1), partition_ids: t.wrap_array(PARTS, 0xa1) }));
    } else if (ap.type === 'com.microsoft:partition' && store[ap.partition]) {
      const q = store[ap.partition];
      reply(msg, 200, 'OK', t.wrap_map({
        name: HUB, type: 'com.microsoft:partition', partition: ap.partition,
        begin_sequence_number: t.wrap_long(0), last_enqueued_sequence_number: t.wrap_long(q.length - 1),
        last_enqueued_offset: String(Math.max(q.length - 1, 0)), last_enqueued_time_utc: t.wrap_timestamp(Date.now()),
        is_partition_empty: q.length === 0 }));
    } else {
      reply(msg, 404, 'unknown', null);
    }
  } else {
    const m = /^[^/]+(?:\/Partitions\/(\d+))?$/.exec(tgt || '');
    const transfer = transfers++;
    const fmt = ctx.delivery.format;
    if (fmt === 0x80013700) { // batch: body is data sections, each an encoded AMQP message
      // rhea hands non-zero message formats over undecoded (a Buffer): walk its sections.
      const rd = new t.Reader(Buffer.isBuffer(msg) ? msg : rhea.message.encode(msg));
      const inner = [];
      while (rd.remaining() > 0) {
        const sec = rd.read();                                   // described section
        const code = sec.descriptor && sec.descriptor.value;
        if (code === 0x75) inner.push(rhea.message.decode(sec.value));         // data section = inner msg
      }
      // One transfer goes to one partition, as the service does with a batch;
      // the SDK puts the batch's partition key on every inner message.
      const key = inner.length ? (inner[0].message_annotations || {})['x-opt-partition-key'] : undefined;
      const pid = (m && m[1]) || (key !== undefined ? partitionFor(key) : PARTS[rr++ % PARTS.length]);
      inner.forEach(e => addEvent(pid, e, transfer));
    } else {
      const key = (msg.message_annotations || {})['x-opt-partition-key'];
      const pid = (m && m[1]) || (key !== undefined ? partitionFor(key) : PARTS[rr++ % PARTS.length]);
      addEvent(pid, msg, transfer);
    }
  }
});
const listen = { host: '127.0.0.1', port: Number(process.env.PORT || 0) };
if (process.env.EH_TLS_CERT) { // amqps, as Event Hubs itself (the SDK uses TLS with a credential)
  Object.assign(listen, { transport: 'tls', cert: fs.readFileSync(process.env.EH_TLS_CERT),
    key: fs.readFileSync(process.env.EH_TLS_KEY) });
}
const srv = c.listen(listen);
srv.on('listening', () => console.log('LISTEN ' + srv.address().port));
process.on('SIGTERM', () => process.exit(0));
