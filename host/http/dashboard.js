// The espfleet dashboard: plain DOM, no framework, no build step. Everything it shows comes from
// the companion's HTTP API on the same origin; live changes arrive as server-sent events.
// Values from devices are only ever put into the page as text (textContent), never as markup.

const SVG = 'http://www.w3.org/2000/svg';
/** Points kept per sensor sparkline: about ten minutes at one reading per five seconds. */
const POINTS_MAX = 120;
/** History loaded for a sparkline when a device first appears. */
const HISTORY_MS = 15 * 60 * 1000;
const HISTORY_LIMIT = 2000;
/** Sensors drawn per device; the rest are listed under "latest" only. */
const SPARKS_MAX = 4;
const SPARK_W = 120;
const SPARK_H = 24;
const BREAKER_NAMES = ['closed', 'open', 'halfOpen', 'isolated'];

const $ = (id) => document.getElementById(id);
const tokenMeta = document.querySelector('meta[name="espfleet-token"]');
let token = (tokenMeta && tokenMeta.content) || sessionStorage.getItem('espfleet-token') || '';

/** id -> { view, row, cells, series: Map<sensor, Array<[ts, value]>> } */
const devices = new Map();

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function getJson(path) {
  const res = await fetch(path, { headers: { Accept: 'application/json' }, cache: 'no-store' });
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const err = new Error((body && body.error && body.error.message) || res.statusText);
    err.status = res.status;
    throw err;
  }
  return body;
}

function fmtNum(v) {
  if (typeof v !== 'number' || !isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
  return String(Math.round(v * 100) / 100);
}

function fmtAgo(ms) {
  if (!ms) return '—';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  if (s < 86400) return Math.floor(s / 3600) + ' h ago';
  return Math.floor(s / 86400) + ' d ago';
}

function fmtUptime(ms) {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d ? d + 'd ' + h + 'h' : h ? h + 'h ' + m + 'm' : m + 'm ' + (s % 60) + 's';
}

// ---- header -------------------------------------------------------------------------------

async function refreshHealth() {
  try {
    // 503 still carries the health view: show what is wrong rather than "unreachable".
    const res = await fetch('/healthz', { headers: { Accept: 'application/json' }, cache: 'no-store' });
    const h = await res.json();
    showHealth(h, res.ok);
  } catch {
    $('health').textContent = 'unreachable';
    $('health').className = 'pill bad';
  }
}

function showHealth(h, ok) {
  const pill = $('health');
  pill.textContent = ok && h && h.ok ? 'ok' : 'degraded';
  pill.className = 'pill ' + (ok && h && h.ok ? 'ok' : 'bad');
  if (!h) return;
  $('node').textContent = h.nodeId;
  $('count').textContent = String(h.devices);
  $('bus').textContent = h.bus.kind + ' · ' + h.bus.clients + (h.bus.clients === 1 ? ' client' : ' clients');
  $('uptime').textContent = fmtUptime(h.uptimeMs);
}

async function refreshCluster() {
  try {
    showCluster(await getJson('/api/cluster'));
  } catch {
    $('cluster-mode').textContent = 'cluster view unavailable';
  }
}

function showCluster(c) {
  $('leader').textContent = c.leader || 'none';
  $('term').textContent = String(c.term);
  $('cluster-mode').textContent = c.mode === 'single' ? 'Single companion (no Raft group).' : 'Raft group of ' + c.members.length + ' members.';
  const owned = new Map(c.ring.owners.map((o) => [o.id, o.devices]));
  const body = $('members').tBodies[0];
  body.replaceChildren();
  for (const m of c.members) {
    const tr = el('tr');
    const name = el('td', 'id', m.id);
    const notes = [m.id === c.leader ? 'leader' : '', m.self ? 'this node' : ''].filter(Boolean);
    if (notes.length) name.append(el('span', 'sub', notes.join(' · ')));
    tr.append(name, el('td', 'mono', m.addr));
    const up = el('td');
    up.append(el('span', 'pill ' + (m.up ? 'up' : 'down'), m.up ? 'up' : 'down'));
    tr.append(up, el('td', '', String(m.weight)), el('td', '', String(owned.get(m.id) ?? 0)));
    body.append(tr);
  }
  $('ring').textContent = 'Ring epoch ' + c.ring.epoch + (c.replicas.length ? ' · replicas: ' + c.replicas.map((r) => r.id + (r.up ? '' : ' (down)') + ' lag ' + r.lagReadings).join(', ') : '');
}

// ---- devices ------------------------------------------------------------------------------

function ensureRow(view) {
  let d = devices.get(view.id);
  if (d) {
    d.view = view;
    renderRow(d);
    return d;
  }
  const row = el('tr');
  row.dataset.device = view.id;
  const cells = {};
  for (const k of ['id', 'state', 'board', 'seen', 'latest', 'spark', 'breaker', 'health']) {
    cells[k] = el('td', k === 'id' ? 'id' : '');
    row.append(cells[k]);
  }
  d = { view, row, cells, series: new Map() };
  devices.set(view.id, d);
  // Keep rows ordered by id, so a device always sits in the same place.
  const body = $('devices').tBodies[0];
  const after = [...body.rows].find((r) => r.dataset.device && r.dataset.device > view.id);
  body.insertBefore(row, after || null);
  $('no-devices').classList.add('hidden');
  // Until the next health poll, the header counts what the table shows.
  $('count').textContent = String(Math.max(devices.size, Number($('count').textContent) || 0));
  addDeviceOption(view.id);
  renderRow(d);
  flash(row);
  loadHistory(d);
  return d;
}

function flash(row) {
  row.classList.remove('flash');
  void row.offsetWidth;
  row.classList.add('flash');
}

function renderRow(d) {
  const v = d.view;
  const c = d.cells;
  c.id.replaceChildren(v.id, el('span', 'sub', v.kind || ''));

  const pill = el('span', 'pill ' + v.state, v.state);
  pill.title = v.stateReason + ' (since ' + new Date(v.stateSinceMs).toLocaleTimeString() + ')';
  const dot = el('span', 'dot' + (v.online ? ' online' : ''));
  dot.title = v.online ? 'session up' : 'no session';
  c.state.replaceChildren(pill, dot, el('span', 'sub', v.stateReason));
  c.state.dataset.state = v.state;

  const board = v.meta ? v.meta.board : '—';
  const fw = (v.meta && v.meta.fw) || v.fw || '—';
  c.board.replaceChildren(board, el('span', 'sub', fw));

  renderSeen(d);
  renderLatest(d);
  renderSparks(d);

  const br = el('span', 'pill ' + v.rpcBreaker, v.rpcBreaker);
  c.breaker.replaceChildren(br);
  c.breaker.dataset.breaker = v.rpcBreaker;
  renderHealth(d);
}

function renderSeen(d) {
  const v = d.view;
  const c = d.cells.seen;
  c.textContent = fmtAgo(v.lastSeenMs);
  c.title = v.lastSeenMs ? new Date(v.lastSeenMs).toLocaleString() : '';
}

function units(v) {
  const u = new Map();
  if (v.meta) for (const s of v.meta.sensors) u.set(s.n, s.u);
  return u;
}

function sensorNames(d) {
  const names = new Set();
  if (d.view.meta) for (const s of d.view.meta.sensors) names.add(s.n);
  if (d.view.latest) for (const k of Object.keys(d.view.latest.r)) names.add(k);
  if (d.view.sensors) for (const k of Object.keys(d.view.sensors)) names.add(k);
  for (const k of d.series.keys()) names.add(k);
  return [...names].sort();
}

/**
 * Each sensor's newest value, also for sensors the newest reading lacks (sampled at different
 * rates): from that reading, the sensor's series or the companion's per-sensor values, whichever
 * is newest.
 */
function renderLatest(d) {
  const l = d.view.latest;
  const c = d.cells.latest;
  const u = units(d.view);
  const box = el('div', 'readings');
  for (const k of sensorNames(d)) {
    // Whichever is newest: the newest reading's value, the sensor's last point, or the value the
    // companion kept for it (a replayed reading can arrive last and still be the oldest).
    const s = d.series.get(k);
    let at = -Infinity;
    let value;
    const kept = d.view.sensors && d.view.sensors[k];
    if (kept) [at, value] = [kept.ts, kept.v];
    if (s && s.length && s[s.length - 1][0] >= at) [at, value] = s[s.length - 1];
    if (l && k in l.r && l.ts >= at) [at, value] = [l.ts, l.r[k]];
    if (at === -Infinity) continue;
    const line = el('div');
    line.dataset.sensor = k;
    line.append(el('span', 'n', k), el('span', 'v', fmtNum(value)), ' ' + (u.get(k) || ''));
    line.title = new Date(at).toLocaleTimeString();
    box.append(line);
  }
  if (!box.childElementCount) {
    c.replaceChildren(el('span', 'muted', 'no readings'));
    return;
  }
  if (l) box.title = 'newest: seq ' + l.seq + ' at ' + new Date(l.ts).toLocaleTimeString() + (l.hist ? ' (replayed)' : '');
  c.replaceChildren(box);
}

function renderSparks(d) {
  const c = d.cells.spark;
  const names = sensorNames(d).filter((n) => (d.series.get(n) || []).length > 0).slice(0, SPARKS_MAX);
  if (!names.length) {
    c.replaceChildren(el('span', 'muted', '—'));
    return;
  }
  const box = el('div', 'sparks');
  for (const n of names) box.append(sparkline(n, d.series.get(n)));
  c.replaceChildren(box);
}

/** One sensor's recent values as an inline SVG polyline, scaled to its own min..max. */
function sparkline(name, pts) {
  const wrap = el('div', 'spark');
  wrap.dataset.sensor = name;
  wrap.dataset.points = String(pts.length);
  wrap.append(el('span', 'n', name));
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('width', String(SPARK_W));
  svg.setAttribute('height', String(SPARK_H));
  svg.setAttribute('viewBox', '0 0 ' + SPARK_W + ' ' + SPARK_H);
  let lo = Infinity;
  let hi = -Infinity;
  for (const p of pts) {
    if (p[1] < lo) lo = p[1];
    if (p[1] > hi) hi = p[1];
  }
  const t0 = pts[0][0];
  const span = pts[pts.length - 1][0] - t0 || 1;
  const range = hi - lo || 1;
  const pad = 3;
  const xy = pts.map((p) => {
    const x = pts.length === 1 ? SPARK_W - pad : pad + ((p[0] - t0) / span) * (SPARK_W - 2 * pad);
    const y = hi === lo ? SPARK_H / 2 : SPARK_H - pad - ((p[1] - lo) / range) * (SPARK_H - 2 * pad);
    return [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
  });
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('points', xy.map((p) => p[0] + ',' + p[1]).join(' '));
  const last = document.createElementNS(SVG, 'circle');
  last.setAttribute('cx', String(xy[xy.length - 1][0]));
  last.setAttribute('cy', String(xy[xy.length - 1][1]));
  last.setAttribute('r', '2');
  const title = document.createElementNS(SVG, 'title');
  title.textContent = name + ': ' + pts.length + ' readings, min ' + fmtNum(lo) + ', max ' + fmtNum(hi);
  svg.append(title, line, last);
  wrap.append(svg);
  return wrap;
}

/** Adds readings to the per-sensor series, kept in time order (replayed readings arrive late). */
function addReadings(d, ts, r) {
  for (const k of Object.keys(r)) {
    const v = r[k];
    if (typeof v !== 'number' || !isFinite(v)) continue;
    let s = d.series.get(k);
    if (!s) d.series.set(k, (s = []));
    let i = s.length;
    while (i > 0 && s[i - 1][0] > ts) i--;
    if (i > 0 && s[i - 1][0] === ts) s[i - 1][1] = v;
    else s.splice(i, 0, [ts, v]);
    if (s.length > POINTS_MAX) s.splice(0, s.length - POINTS_MAX);
  }
}

async function loadHistory(d) {
  try {
    const since = Date.now() - HISTORY_MS;
    const t = await getJson('/api/devices/' + encodeURIComponent(d.view.id) + '/telemetry?since=' + since + '&limit=' + HISTORY_LIMIT);
    for (const rec of t.readings) addReadings(d, rec.ts, rec.r);
    renderSparks(d);
  } catch {
    // The sparkline fills from live readings instead.
  }
}

/** The device-reported health ({breaker, outbox}); its shape is the firmware's, so read it loosely. */
function renderHealth(d) {
  const h = d.view.health;
  const c = d.cells.health;
  if (!h || (h.breaker === undefined && h.outbox === undefined)) {
    c.replaceChildren(el('span', 'muted', '—'));
    return;
  }
  const box = el('div', 'health');
  if (h.breaker !== undefined) {
    const name = breakerName(h.breaker);
    const line = el('div');
    line.append(el('span', 'k', 'breaker '), el('span', 'pill ' + name, name));
    box.append(line);
  }
  if (h.outbox !== undefined) {
    const line = el('div');
    line.append(el('span', 'k', 'outbox '), outboxText(h.outbox));
    box.append(line);
  }
  if (d.view.healthAtMs) box.title = 'reported ' + fmtAgo(d.view.healthAtMs);
  c.replaceChildren(box);
}

function breakerName(b) {
  if (typeof b === 'string') return b;
  if (typeof b === 'number') return BREAKER_NAMES[b] || String(b);
  if (b && typeof b === 'object') {
    if (typeof b.state === 'string') return b.state;
    if (typeof b.s === 'number') return BREAKER_NAMES[b.s] || String(b.s);
  }
  return JSON.stringify(b).slice(0, 40);
}

function outboxText(o) {
  if (typeof o === 'number') return o + ' queued';
  if (o && typeof o === 'object') {
    const len = first(o, ['len', 'length', 'n', 'size', 'queued', 'q']);
    const dropped = first(o, ['dropped', 'drop', 'd']);
    if (len !== undefined || dropped !== undefined) return (len ?? '?') + ' queued · ' + (dropped ?? 0) + ' dropped';
  }
  return JSON.stringify(o).slice(0, 60);
}

function first(o, keys) {
  for (const k of keys) if (typeof o[k] === 'number') return o[k];
  return undefined;
}

async function refreshDevices() {
  try {
    const { devices: list } = await getJson('/api/devices');
    for (const v of list) ensureRow(v);
  } catch {
    // Shown by the live indicator; the next refresh retries.
  }
}

async function refreshDevice(id) {
  try {
    ensureRow(await getJson('/api/devices/' + encodeURIComponent(id)));
  } catch {
    // Unknown to the companion after all (removed, or the id is not addressable).
  }
}

setInterval(() => {
  for (const d of devices.values()) renderSeen(d);
}, 1000);

// ---- live events --------------------------------------------------------------------------

function onDeviceEvent(ev) {
  const d = devices.get(ev.id);
  if (d) {
    d.view.state = ev.state;
    d.view.stateReason = ev.reason;
    d.view.stateSinceMs = ev.at;
    renderRow(d);
    flash(d.row);
  }
  // Fetch the whole record: a new device, or fields the event does not carry (online, health).
  refreshDevice(ev.id);
}

function onTelemetryEvent(ev) {
  const d = devices.get(ev.id);
  if (!d) {
    refreshDevice(ev.id);
    return;
  }
  if (!d.view.latest || ev.ts >= d.view.latest.ts) d.view.latest = { device: ev.id, seq: ev.seq, ts: ev.ts, hist: ev.hist, r: ev.r };
  if (!ev.hist) d.view.lastSeenMs = Math.max(d.view.lastSeenMs || 0, Date.now());
  addReadings(d, ev.ts, ev.r);
  renderLatest(d);
  renderSparks(d);
  renderSeen(d);
}

function onBreakerEvent(ev) {
  const d = devices.get(ev.id);
  if (!d) return;
  d.view.rpcBreaker = ev.state;
  renderRow(d);
}

function onClusterEvent(ev) {
  $('leader').textContent = ev.leader || 'none';
  $('term').textContent = String(ev.term);
  refreshCluster();
}

function listen(es, type, fn) {
  es.addEventListener(type, (m) => {
    let ev;
    try {
      ev = JSON.parse(m.data);
    } catch {
      return;
    }
    fn(ev);
  });
}

function connect() {
  const live = $('live');
  const es = new EventSource('/api/events');
  listen(es, 'device', onDeviceEvent);
  listen(es, 'telemetry', onTelemetryEvent);
  listen(es, 'breaker', onBreakerEvent);
  listen(es, 'cluster', onClusterEvent);
  es.addEventListener('open', () => {
    live.textContent = 'live';
    live.className = 'live on';
    // Events sent before this stream opened are lost: reload the lists (also after a reconnect).
    refreshAll();
  });
  es.addEventListener('error', () => {
    live.textContent = es.readyState === EventSource.CLOSED ? 'disconnected' : 'reconnecting';
    live.className = 'live off';
    // The browser stops retrying after a refusal (e.g. 503 when too many streams are open).
    if (es.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
  });
}

function refreshAll() {
  refreshHealth();
  refreshCluster();
  refreshDevices();
}

// ---- RPC form -----------------------------------------------------------------------------

function addDeviceOption(id) {
  const sel = $('rpc-device');
  if ([...sel.options].some((o) => o.value === id)) return;
  const after = [...sel.options].find((o) => o.value > id);
  sel.insertBefore(new Option(id, id), after || null);
}

function showRpc(ok, status, body) {
  const s = $('rpc-status');
  s.textContent = status;
  s.className = 'rpc-status ' + (ok ? 'ok' : 'err');
  $('rpc-result').textContent = body;
}

async function sendRpc(e) {
  e.preventDefault();
  const id = $('rpc-device').value;
  const m = $('rpc-method').value.trim();
  const timeoutMs = Number($('rpc-timeout').value);
  if (!id) return showRpc(false, 'No device to call yet.', '');
  let p;
  try {
    p = JSON.parse($('rpc-params').value.trim() || '{}');
  } catch (err) {
    return showRpc(false, 'Params are not valid JSON.', String(err.message || err));
  }
  const typed = $('rpc-token').value.trim();
  if (typed) {
    token = typed;
    sessionStorage.setItem('espfleet-token', token);
  }
  const btn = $('rpc-send');
  btn.disabled = true;
  showRpc(true, 'Calling ' + m + ' on ' + id + '…', '');
  $('rpc-status').className = 'rpc-status';
  try {
    const res = await fetch('/api/devices/' + encodeURIComponent(id) + '/rpc', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', Authorization: 'Bearer ' + token },
      body: JSON.stringify({ m, p, timeoutMs }),
    });
    const body = await res.json().catch(() => null);
    if (res.ok && body) {
      showRpc(true, res.status + ' · ' + m + ' answered in ' + body.ms + ' ms (' + body.attempts + (body.attempts === 1 ? ' attempt)' : ' attempts)'), JSON.stringify(body.result, null, 2));
    } else {
      const er = (body && body.error) || { code: 'http_' + res.status, message: res.statusText };
      if (res.status === 401) $('rpc-token-row').classList.remove('hidden');
      showRpc(false, res.status + ' · ' + er.code + ': ' + er.message, JSON.stringify(body, null, 2));
    }
  } catch (err) {
    showRpc(false, 'Request failed: ' + String(err.message || err), '');
  } finally {
    btn.disabled = false;
  }
}

$('rpc-form').addEventListener('submit', sendRpc);
if (!token) $('rpc-token-row').classList.remove('hidden');
setInterval(refreshHealth, 10_000);
connect();
