// The dashboard: one page, no build step, nothing from elsewhere. It reads the admin API with the
// token kept in this tab's session storage, and follows /events (Server-Sent Events, read with
// fetch so the token travels in the Authorization header, which EventSource cannot send).
'use strict';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'multiplexer-admin-token';
// The address multiplexer prints at start carries the token in the fragment (#token=…), which
// the browser never sends: it is kept for this tab, and taken out of the address bar and history.
const fromAddress = new URLSearchParams(location.hash.slice(1)).get('token');
if (fromAddress) {
  sessionStorage.setItem(TOKEN_KEY, fromAddress);
  window.history.replaceState(null, '', location.pathname + location.search);
}
let token = sessionStorage.getItem(TOKEN_KEY) ?? '';
let history = [];

function headers(extra = {}) {
  return token ? { ...extra, authorization: `Bearer ${token}` } : extra;
}

function ms(value) {
  if (value === null || value === undefined) return '–';
  return value < 10 ? `${value.toFixed(1)} ms` : `${Math.round(value)} ms`;
}

function age(msValue) {
  const s = Math.floor(msValue / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

function renderTiles(status) {
  const tiles = status.backends.map((b) => {
    const rows = [
      ['port', b.port ?? '–'],
      ['pid', b.pid ?? '–'],
      ['age', age(b.ageMs)],
      ['served', b.served],
      ['RSS', b.rssBytes === undefined ? '–' : `${(b.rssBytes / 1048576).toFixed(1)} MB`],
      ['leased by', b.leasedBy === undefined ? '–' : `worker ${b.leasedBy}`],
    ];
    if (b.toRoll) rows.push(['note', 'rolling restart: to be replaced']);
    if (b.recycle) rows.push(['recycle', b.recycle]);
    const dl = el('dl');
    for (const [k, v] of rows) dl.append(el('dt', {}, k), el('dd', {}, String(v)));
    return el(
      'div',
      { class: `tile ${b.state}`, 'data-backend': String(b.id) },
      el(
        'div',
        { class: 'head' },
        el('span', {}, `#${b.id}`),
        el('span', { class: 'state' }, b.state),
      ),
      dl,
    );
  });
  const services = status.services ?? [];
  const box = $('backends');
  if (services.length > 1) {
    // Several services: one group each, its own pool and queue above its backends.
    box.className = 'services';
    box.replaceChildren(
      ...services.map((svc) =>
        el(
          'section',
          { class: 'service', 'data-service': svc.name },
          el(
            'h3',
            {},
            el('span', { class: 'name' }, svc.name),
            ` · pool_size ${svc.size}, overflow up to ${svc.maxOverflow} · queue ${svc.queue}${svc.rolling ? ' · rolling restart' : ''}`,
          ),
          el(
            'div',
            { class: 'tiles' },
            ...tiles.filter((t, i) => status.backends[i].service === svc.name),
          ),
        ),
      ),
    );
  } else {
    box.className = 'tiles';
    box.replaceChildren(...tiles);
  }
  $('pool').textContent =
    services.length > 1
      ? `${services.length} services, ${status.backends.length} backends${status.pool.rolling ? ', rolling restart in progress' : ''}`
      : `pool_size ${status.pool.size}, overflow up to ${status.pool.maxOverflow}, ${status.pool.strategy}${status.pool.rolling ? ', rolling restart in progress' : ''}`;
}

/** The scale form: with several services, which one (its pool_size shown), else the pool's. */
function renderScale(status) {
  const services = status.services ?? [];
  const select = $('scale-service');
  select.hidden = services.length < 2;
  if (services.length >= 2) {
    const names = services.map((svc) => svc.name);
    if ([...select.options].map((o) => o.value).join() !== names.join()) {
      select.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
    }
  }
  if (document.activeElement === $('scale-size')) return;
  const chosen = services.find((svc) => svc.name === select.value);
  $('scale-size').min = services.length >= 2 ? '0' : '1';
  $('scale-size').value = String(services.length >= 2 && chosen ? chosen.size : status.pool.size);
}

function renderWorkers(status) {
  const rows = status.workers.map((w) =>
    el(
      'tr',
      {},
      el('td', {}, `worker ${w.id}`),
      el('td', {}, `pid ${w.pid}`),
      el('td', {}, w.phase),
      el('td', {}, w.listening ? 'listening' : '–'),
    ),
  );
  $('workers').replaceChildren(...rows);
  const endings = (status.endings ?? []).slice(-8).reverse();
  $('endings').replaceChildren(
    ...(endings.length
      ? endings.map((e) =>
          el(
            'li',
            {},
            `#${e.backend}${e.service && status.services?.length > 1 ? ` (${e.service})` : ''}: ${e.ending}`,
          ),
        )
      : [el('li', { class: 'muted' }, 'none yet')]),
  );
}

function renderFrame(frame) {
  const s = frame.status;
  $('instance').textContent = `pid ${s.pid} · v${s.version} · ${s.state} · up ${age(s.uptimeMs)}`;
  $('rps').textContent = frame.rps.toFixed(frame.rps < 10 ? 1 : 0);
  $('lat50').textContent = ms(frame.latency.p50);
  $('lat99').textContent = ms(frame.latency.p99);
  $('wait50').textContent = ms(frame.queueWait.p50);
  $('wait99').textContent = ms(frame.queueWait.p99);
  $('queue').textContent = String(s.queue);
  $('requests').textContent = String(frame.requests);
  for (const code of ['502', '503', '504']) {
    $(`c${code}`).textContent = String(frame.codes[code]);
    $(`c${code}`).parentElement.classList.toggle('bad', frame.codes[code] > 0);
  }
  renderScale(s);
  renderTiles(s);
  renderWorkers(s);
  drawChart();
}

function drawChart() {
  const canvas = $('chart');
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth * ratio;
  const height = canvas.clientHeight * ratio;
  canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, width, height);
  const points = history.slice(-300);
  if (points.length < 2) return;
  const style = getComputedStyle(document.documentElement);
  const line = (values, color) => {
    const max = Math.max(1, ...values.filter((v) => v !== null));
    g.strokeStyle = color;
    g.lineWidth = 2 * ratio;
    g.beginPath();
    let started = false;
    // The newest point at the right edge; five minutes span the width.
    values.forEach((v, i) => {
      if (v === null) return;
      const x = width - ((values.length - 1 - i) / (300 - 1)) * width;
      const y = height - 4 * ratio - (v / max) * (height - 8 * ratio);
      if (started) g.lineTo(x, y);
      else g.moveTo(x, y);
      started = true;
    });
    g.stroke();
    return max;
  };
  g.strokeStyle = style.getPropertyValue('--line');
  g.lineWidth = 1;
  for (let i = 1; i < 4; i++) {
    g.beginPath();
    g.moveTo(0, (height * i) / 4);
    g.lineTo(width, (height * i) / 4);
    g.stroke();
  }
  const maxRps = line(
    points.map((p) => p.rps),
    style.getPropertyValue('--starting'),
  );
  const maxP99 = line(
    points.map((p) => p.latency.p99),
    style.getPropertyValue('--busy'),
  );
  g.fillStyle = style.getPropertyValue('--muted');
  g.font = `${11 * ratio}px system-ui`;
  g.fillText(`${Math.round(maxRps)} req/s · ${Math.round(maxP99)} ms`, 6 * ratio, 14 * ratio);
}

async function follow() {
  const answer = await fetch('/events', { headers: headers(), cache: 'no-store' });
  if (!answer.ok || !answer.body) throw new Error(`/events answered ${answer.status}`);
  $('live').classList.add('on');
  const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (!data) continue;
      if (event === 'history') {
        history = JSON.parse(data);
        if (history.length) renderFrame(history[history.length - 1]);
      } else if (event === 'frame') {
        const frame = JSON.parse(data);
        history.push(frame);
        if (history.length > 300) history.shift();
        renderFrame(frame);
      }
    }
  }
}

async function act(path, body) {
  $('answer').textContent = `${path}…`;
  try {
    const answer = await fetch(path, {
      method: 'POST',
      headers: headers({ 'content-type': 'application/json' }),
      body: JSON.stringify(body ?? {}),
    });
    const text = await answer.text();
    let shown = text;
    try {
      shown = JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      // not JSON: shown as it came
    }
    $('answer').textContent = `${answer.status} ${path}\n${shown}`;
  } catch (err) {
    $('answer').textContent = `${path} failed: ${err.message}`;
  }
}

async function open() {
  const answer = await fetch('/dashboard.json', { headers: headers(), cache: 'no-store' });
  if (answer.status === 401) {
    $('login').hidden = false;
    $('main').hidden = true;
    $('login-error').textContent = token ? 'that token was refused' : '';
    $('instance').textContent = 'token required';
    return;
  }
  const info = await answer.json();
  $('login').hidden = true;
  $('main').hidden = false;
  $('actions').hidden = !info.actions;
  $('readonly').hidden = info.actions;
  for (;;) {
    try {
      await follow();
    } catch {
      // the stream ended (restart, network): try again in a moment
    }
    $('live').classList.remove('on');
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

$('login').addEventListener('submit', (event) => {
  event.preventDefault();
  token = $('token').value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  void open();
});
$('scale-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const service = $('scale-service').hidden ? {} : { service: $('scale-service').value };
  void act('/scale', { pool_size: Number($('scale-size').value), ...service });
});
$('reload').addEventListener('click', () => void act('/reload'));
$('roll').addEventListener('click', () => void act('/roll'));
window.addEventListener('resize', drawChart);
void open();
