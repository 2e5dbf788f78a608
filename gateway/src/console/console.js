// The operator console: polls the server API once a second and renders it.
// Everything shown is set with textContent, never parsed as HTML: topic
// names, keys and payloads come from clients and backends.
'use strict';

const base = location.pathname.replace(/\/console(\/login)?\/?$/, '');
let following = null;

async function api(path, options = {}) {
  const response = await fetch(base + path, {
    ...options,
    credentials: 'same-origin',
    headers: { 'x-herald-console': '1', ...(options.headers ?? {}) },
  });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) location.reload(); // session over: sign in again
  if (!response.ok) throw new Error(body.detail ?? body.title ?? `HTTP ${response.status}`);
  return body;
}

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = String(text);
  if (cls) td.className = cls;
  return td;
}

function fill(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement('tr');
    tr.append(...cells);
    return tr;
  }));
}

function sum(values) { return values.reduce((a, b) => a + b, 0); }

function render(replicas) {
  const now = Date.now();
  const total = sum(replicas.map((r) => sum(Object.values(r.routes))));
  document.getElementById('total-connections').textContent = String(total);
  document.getElementById('replica-count').textContent = String(replicas.length);
  document.getElementById('ready-count').textContent = String(replicas.filter((r) => r.ready).length);
  document.getElementById('topic-count').textContent = String(sum(replicas.map((r) => r.topics)));
  document.getElementById('served-by').textContent = `served by ${replicas[0]?.replica ?? '?'}`;
  document.getElementById('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;

  fill(document.getElementById('replicas'), replicas.map((r) => [
    cell(r.replica),
    cell(r.readiness, r.ready ? 'ok' : 'bad'),
    cell(`${r.broker} ${r.broker_ready ? 'connected' : 'disconnected'}`, r.broker_ready ? 'ok' : 'bad'),
    cell(sum(Object.values(r.routes)), 'num'),
    cell(r.topics, 'num'),
    cell(`${Math.max(0, Math.round((now - r.at_ms) / 1000))} s`, 'num'),
  ]));

  // Routes × replicas.
  const routes = document.getElementById('routes');
  const head = document.createElement('tr');
  head.append(...['route', ...replicas.map((r) => r.replica), 'total'].map((t, i) => {
    const th = document.createElement('th');
    th.textContent = t;
    if (i > 0) th.className = 'num';
    return th;
  }));
  routes.tHead.replaceChildren(head);
  const names = [...new Set(replicas.flatMap((r) => Object.keys(r.routes)))].sort();
  fill(routes, names.map((name) => {
    const counts = replicas.map((r) => r.routes[name] ?? 0);
    const row = [cell(name), ...counts.map((n) => cell(n, 'num')), cell(sum(counts), 'num')];
    row[0].dataset.route = name;
    return row;
  }));

  // Busiest topics across replicas.
  const topics = new Map();
  for (const r of replicas) {
    for (const t of r.busiest_topics) {
      const seen = topics.get(t.topic) ?? { subscribers: 0, replicas: 0 };
      topics.set(t.topic, { subscribers: seen.subscribers + t.subscribers, replicas: seen.replicas + 1 });
    }
  }
  const busiest = [...topics.entries()]
    .filter(([topic]) => !topic.startsWith('res:herald:'))
    .sort((a, b) => b[1].subscribers - a[1].subscribers || a[0].localeCompare(b[0]))
    .slice(0, 50);
  fill(document.getElementById('topics'), busiest.map(([topic, t]) =>
    [cell(topic), cell(t.subscribers, 'num'), cell(t.replicas, 'num')]));

  const presence = new Map();
  for (const r of replicas) {
    for (const p of r.presence) {
      const key = `${p.topic}\u0000${p.key}`;
      presence.set(key, { ...p, connections: (presence.get(key)?.connections ?? 0) + p.connections });
    }
  }
  fill(document.getElementById('presence'), [...presence.values()].map((p) =>
    [cell(p.topic), cell(p.key), cell(p.connections, 'num')]));
}

async function refresh() {
  const error = document.getElementById('error');
  try {
    const { replicas } = await api('/cluster/replicas');
    render(replicas);
    if (following) {
      const { events } = await api(`/history/${encodeURIComponent(following)}?last=20`);
      document.getElementById('tail').replaceChildren(...events.slice().reverse().map((e) => {
        const li = document.createElement('li');
        li.textContent = `${new Date(e.ts).toLocaleTimeString()} ${e.type} ${JSON.stringify(e.data)}`;
        return li;
      }));
    }
    error.hidden = true;
  } catch (e) {
    error.textContent = `Cannot read the API: ${e.message}`;
    error.hidden = false;
  }
}

document.getElementById('tail-form').addEventListener('submit', (event) => {
  event.preventDefault();
  following = document.getElementById('tail-topic').value.trim();
  refresh();
});

document.getElementById('publish-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const result = document.getElementById('publish-result');
  try {
    const data = JSON.parse(document.getElementById('publish-data').value || 'null');
    const to = document.getElementById('publish-to').value.split(',').map((t) => t.trim()).filter(Boolean);
    const type = document.getElementById('publish-type').value.trim();
    const published = await api('/publish', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ to, type, data }),
    });
    result.className = 'ok';
    result.textContent = `published ${published.id}`;
  } catch (e) {
    result.className = 'error';
    result.textContent = `not published: ${e.message}`;
  }
});

refresh();
setInterval(refresh, 1000);
