// An AgentHQ client written to how the AgentHQ SDK really speaks: every frame
// both ways is {"event": NAME, "data": {...}}, the token rides in ?token=,
// subscribe/unsubscribe carry the channel in `data`, and a heartbeat goes out
// every 60 s (AHQ_HEARTBEAT_MS shortens it for tests).
//
// Driven line by line on stdin, reporting on stdout as JSON lines:
//   subscribe ID | unsubscribe ID | heartbeat | raw TEXT | close
//   -> {"open":true} | {"frame":<parsed frame>} | {"closed":{"code":N,"reason":"…"}}
// Usage: node agenthq-sdk-client.mjs BASE_URL TOKEN
import { createInterface } from 'node:readline';
import WebSocket from 'ws';

class AgentHQClient {
  constructor({ baseUrl, token, heartbeatMs = 60_000 }) {
    this.url = `${baseUrl.replace(/^http/, 'ws')}/ws?token=${encodeURIComponent(token)}`;
    this.heartbeatMs = heartbeatMs;
    this.handlers = new Map();
  }

  connect() {
    return new Promise((resolve, reject) => {
      this.ws = new WebSocket(this.url);
      this.ws.on('open', () => {
        this.timer = setInterval(() => this.send('heartbeat', {}), this.heartbeatMs);
        resolve();
      });
      this.ws.on('message', (raw) => {
        let msg;
        try { msg = JSON.parse(raw.toString()); } catch { return; }
        this.emit('*', msg);
        this.emit(msg.event, msg.data);
      });
      this.ws.on('close', (code, reason) => {
        clearInterval(this.timer);
        this.emit('close', { code, reason: reason.toString() });
      });
      this.ws.on('error', (e) => reject(e));
    });
  }

  send(event, data) { this.ws.send(JSON.stringify({ event, data })); }
  subscribe(channel) { this.send('subscribe', { channel }); }
  unsubscribe(channel) { this.send('unsubscribe', { channel }); }
  raw(text) { this.ws.send(text); }
  close() { this.ws.close(1000); }

  on(event, fn) { this.handlers.set(event, [...(this.handlers.get(event) ?? []), fn]); }
  emit(event, arg) { for (const fn of this.handlers.get(event) ?? []) fn(arg); }
}

const [baseUrl, token] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const client = new AgentHQClient({
  baseUrl, token, heartbeatMs: Number(process.env.AHQ_HEARTBEAT_MS ?? 60_000),
});
client.on('*', (frame) => out({ frame }));
client.on('close', (closed) => { out({ closed }); process.exit(0); });
try {
  await client.connect();
} catch (e) {
  out({ error: String(e) });
  process.exit(1);
}
out({ open: true });
for await (const line of createInterface({ input: process.stdin })) {
  const [verb, ...rest] = line.split(' ');
  const arg = rest.join(' ');
  if (verb === 'subscribe') client.subscribe(arg);
  else if (verb === 'unsubscribe') client.unsubscribe(arg);
  else if (verb === 'heartbeat') client.send('heartbeat', {});
  else if (verb === 'raw') client.raw(arg);
  else if (verb === 'close') client.close();
}
