// The dashboard: reads the query API with the operator's read key and draws each metric family.
// Every card carries data-state (loading | ready | empty | error) so people and tests can tell
// what it shows; the retention card also carries data-query, the parameters its numbers answer.
'use strict';

const HEATMAP_COHORTS = { day: 30, week: 26, month: 24 };
const NEWEST_ROWS = 8;
const REFRESH_MS = 60000;
const MODE_TEXT = {
  on: 'Share of each cohort active in that period.',
  on_or_after: 'Share of each cohort active in that period or any later one.',
  membership: 'Share of each cohort still a member at the end of that period.',
};
const COLORS = ['#2f6fde', '#12a37f', '#e8833a', '#9b59b6', '#c0392b', '#7f8c8d'];

const $ = (id) => document.getElementById(id);
const view = { community: '', key: '', group: '', granularity: 'week', mode: 'on' };
const charts = {};
let refreshTimer = null;

class HttpError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

async function api(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v != null) q.set(k, v);
  const url = `/v1/communities/${encodeURIComponent(view.community)}/${path}${q.toString() ? '?' + q : ''}`;
  let resp;
  try {
    resp = await fetch(url, { headers: { Authorization: 'Bearer ' + view.key, Accept: 'application/json' } });
  } catch (e) {
    throw new HttpError(0, 'The query API did not answer (network error).');
  }
  let body = null;
  try { body = await resp.json(); } catch (_) { /* an error page without JSON */ }
  if (!resp.ok) {
    const msg = (body && body.error && body.error.message) || `HTTP ${resp.status}`;
    throw new HttpError(resp.status, msg, Number(resp.headers.get('Retry-After')) || null);
  }
  return body;
}

function setCard(name, state, message = '') {
  const card = $('card-' + name);
  card.dataset.state = state;
  card.querySelector('.state').textContent = message;
}

function chart(name) {
  if (!charts[name]) charts[name] = echarts.init($(name + '-chart'), null, { renderer: 'svg' });
  return charts[name];
}

const pct = (n, d) => (d > 0 ? (100 * n) / d : null);
const fmtPct = (x) => (x == null ? '—' : x.toFixed(1) + '%');
const fmtInt = (n) => Number(n).toLocaleString('en-US');
const periodWord = () => ({ day: 'day', week: 'week', month: 'month' })[view.granularity];

function baseOption(extra) {
  return Object.assign({
    animation: false,
    color: COLORS,
    grid: { left: 56, right: 56, top: 36, bottom: 56 },
    tooltip: { trigger: 'axis' },
    legend: { top: 0 },
  }, extra);
}

function drawRetention(data) {
  const cohorts = data.cohorts.slice(-HEATMAP_COHORTS[view.granularity]);
  const hint = $('retention-hint');
  const shown = cohorts.length < data.cohorts.length ? ` Newest ${cohorts.length} of ${data.cohorts.length} cohorts.` : '';
  hint.textContent = MODE_TEXT[view.mode] + shown + ' Hover a cell for member counts.';
  if (cohorts.length === 0) return false;
  const width = Math.max(...cohorts.map((c) => c.values.length));
  const cells = [];
  cohorts.forEach((c, row) => c.values.forEach((v, k) => cells.push([k, row, pct(v, c.size), v, c.size])));
  chart('retention').setOption(baseOption({
    grid: { left: 8, right: 24, top: 16, bottom: 72, containLabel: true },
    legend: { show: false },
    tooltip: {
      trigger: 'item',
      formatter: (p) => {
        const [k, row, share, v, size] = p.data;
        return `Cohort ${cohorts[row].cohort}, ${periodWord()} +${k}<br>${fmtInt(v)} of ${fmtInt(size)} members (${fmtPct(share)})`;
      },
    },
    xAxis: { type: 'category', name: `${periodWord()}s after joining`, nameLocation: 'middle', nameGap: 28,
             data: Array.from({ length: width }, (_, k) => '+' + k), splitArea: { show: true }, axisLabel: { interval: 0 } },
    yAxis: { type: 'category', inverse: true, axisLabel: { interval: 0 },
             data: cohorts.map((c) => `${c.cohort} (${fmtInt(c.size)})`) },
    visualMap: { min: 0, max: 100, calculable: false, orient: 'horizontal', left: 'center', bottom: 0,
                 itemHeight: 160, text: ['more', 'fewer'], inRange: { color: ['#f0f5ff', '#2f6fde', '#0b2a6b'] } },
    series: [{
      type: 'heatmap', data: cells, encode: { x: 0, y: 1, value: 2 },
      label: { show: true, fontSize: 10, formatter: (p) => fmtPct(p.data[2]) },
      emphasis: { itemStyle: { borderColor: '#1f2933', borderWidth: 1 } },
    }],
  }), true);
  return true;
}

function drawActivation(data) {
  const rows = data.cohorts;
  if (rows.length === 0) return false;
  chart('activation').setOption(baseOption({
    xAxis: { type: 'category', data: rows.map((r) => r.cohort) },
    yAxis: [{ type: 'value', name: '% activated', max: 100 }, { type: 'value', name: 'median hours' }],
    series: [
      { name: 'activated %', type: 'bar', data: rows.map((r) => ({ value: pct(r.activated, r.size),
        itemStyle: { opacity: r.complete ? 1 : 0.45 } })) },
      { name: 'median hours to activate', type: 'line', yAxisIndex: 1, data: rows.map((r) => r.median_hours_to_activate) },
    ],
    tooltip: { trigger: 'axis', valueFormatter: (v) => (v == null ? '—' : Number(v).toFixed(1)) },
  }), true);
  return true;
}

function drawConversion(data) {
  const rows = data.cohorts;
  if (rows.length === 0) return false;
  chart('conversion').setOption(baseOption({
    xAxis: { type: 'category', data: rows.map((r) => r.cohort) },
    yAxis: [{ type: 'value', name: '% of cohort' }, { type: 'value', name: 'value' }],
    series: [
      { name: 'converted %', type: 'bar', data: rows.map((r) => ({ value: pct(r.converted, r.size),
        itemStyle: { opacity: r.complete ? 1 : 0.45 } })) },
      { name: 'activated then converted %', type: 'bar', data: rows.map((r) => pct(r.activated_then_converted, r.size)) },
      { name: 'conversion value', type: 'line', yAxisIndex: 1, data: rows.map((r) => r.value) },
    ],
    tooltip: { trigger: 'axis', valueFormatter: (v) => (v == null ? '—' : Number(v).toFixed(1)) },
  }), true);
  return true;
}

function drawEngagement(data) {
  const days = data.days;
  if (days.length === 0) return false;
  chart('engagement').setOption(baseOption({
    xAxis: { type: 'category', data: days.map((d) => d.day) },
    yAxis: { type: 'value', name: 'members' },
    dataZoom: [{ type: 'inside' }, { type: 'slider', height: 18, bottom: 8 }],
    series: ['dau', 'wau', 'mau'].map((k) => ({ name: k.toUpperCase(), type: 'line', showSymbol: false,
      data: days.map((d) => d[k]) })),
  }), true);
  return true;
}

function drawChurn(data) {
  const ps = data.periods;
  if (ps.length === 0) return false;
  chart('churn').setOption(baseOption({
    xAxis: { type: 'category', data: ps.map((p) => p.period) },
    yAxis: [{ type: 'value', name: 'members' }, { type: 'value', name: 'churn rate %' }],
    series: [
      ...['left', 'removed', 'inactive'].map((k) => ({ name: k, type: 'bar', stack: k === 'inactive' ? 'i' : 'out',
        data: ps.map((p) => p[k]) })),
      { name: 'churn rate %', type: 'line', yAxisIndex: 1, data: ps.map((p) => (p.churn_rate == null ? null : 100 * p.churn_rate)) },
    ],
    tooltip: { trigger: 'axis', valueFormatter: (v) => (v == null ? '—' : Number.isInteger(v) ? fmtInt(v) : v.toFixed(2)) },
  }), true);
  return true;
}

function drawLifecycle(data) {
  const ps = data.periods;
  if (ps.length === 0) return false;
  chart('lifecycle').setOption(baseOption({
    xAxis: { type: 'category', data: ps.map((p) => p.period) },
    yAxis: { type: 'value', name: 'members' },
    series: [
      ...['new', 'returning', 'resurrecting'].map((k) => ({ name: k, type: 'bar', stack: 'members', data: ps.map((p) => p[k]) })),
      { name: 'dormant', type: 'bar', stack: 'members', data: ps.map((p) => -p.dormant) },
    ],
    tooltip: { trigger: 'axis', valueFormatter: (v) => fmtInt(Math.abs(v)) },
  }), true);
  return true;
}

function drawNewest(retention, activation, conversion, referral) {
  const byCohort = (rows) => Object.fromEntries(rows.map((r) => [r.cohort, r]));
  const act = byCohort(activation.cohorts), conv = byCohort(conversion.cohorts), ref = byCohort(referral.cohorts);
  const body = $('newest-table').querySelector('tbody');
  body.replaceChildren();
  const newest = retention.cohorts.slice(-NEWEST_ROWS).reverse();
  for (const c of newest) {
    const a = act[c.cohort], v = conv[c.cohort], r = ref[c.cohort];
    const cells = [
      c.cohort,
      fmtInt(c.size),
      a ? `${fmtInt(a.activated)} (${fmtPct(pct(a.activated, a.size))})${a.complete ? '' : ' *'}` : '—',
      v ? `${fmtInt(v.converted)} (${fmtPct(pct(v.converted, v.size))})${v.complete ? '' : ' *'}` : '—',
      c.values.length > 1 ? fmtPct(pct(c.values[1], c.size)) : '—',
      r ? fmtInt(r.invited) : '—',
    ];
    const tr = document.createElement('tr');
    for (const text of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  return newest.length > 0;
}

function errorText(e) {
  if (e.status === 503) return `The metric store is not answering. Retrying in ${e.retryAfter || 5} s.`;
  return e.message;
}

// Runs one card: loading state, fetch, draw, then ready / empty / error.
async function runCard(name, fetcher, draw, silent) {
  if (!silent) setCard(name, 'loading', 'Loading…');
  try {
    const data = await fetcher();
    const drawn = draw(data);
    setCard(name, drawn ? 'ready' : 'empty', drawn ? '' : 'No data for this selection yet.');
    return data;
  } catch (e) {
    setCard(name, 'error', errorText(e));
    throw e;
  }
}

function showBanner(message) {
  const b = $('banner');
  b.hidden = !message;
  b.textContent = message || '';
}

async function loadGroups() {
  const body = await api('groups');
  const select = $('scope');
  select.replaceChildren(new Option('Whole community', ''));
  for (const g of body.groups) select.appendChild(new Option('Group ' + g, g));
  if (!body.groups.includes(view.group)) view.group = '';
  select.value = view.group;
}

async function loadFreshness() {
  const f = await api('freshness');
  $('freshness').textContent = f.as_of
    ? `${fmtInt(f.events_processed)} events counted · data as of ${f.as_of.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}` +
      (f.lag_events > 0 ? ` · ${fmtInt(f.lag_events)} still queued` : '')
    : 'No events counted yet.';
}

// A newer request (mode or scope clicked again) supersedes one still in flight.
let retentionSeq = 0;

async function loadRetention(silent) {
  const seq = ++retentionSeq;
  const query = { granularity: view.granularity, group: view.group, mode: view.mode };
  $('card-retention').dataset.query = JSON.stringify(query);
  if (!silent) setCard('retention', 'loading', 'Loading…');
  try {
    const data = await api('retention', query);
    if (seq !== retentionSeq) return data;
    const drawn = drawRetention(data);
    setCard('retention', drawn ? 'ready' : 'empty', drawn ? '' : 'No cohorts for this selection yet.');
    return data;
  } catch (e) {
    if (seq === retentionSeq) setCard('retention', 'error', errorText(e));
    throw e;
  }
}

async function loadAll(silent = false) {
  const scoped = { group: view.group, granularity: view.granularity };
  writeHash();
  const runs = [
    loadRetention(silent),
    runCard('activation', () => api('activation', scoped), drawActivation, silent),
    runCard('conversion', () => api('conversion', scoped), drawConversion, silent),
    runCard('engagement', () => api('engagement', { group: view.group }), drawEngagement, silent),
    runCard('churn', () => api('churn', scoped), drawChurn, silent),
    runCard('lifecycle', () => api('lifecycle', scoped), drawLifecycle, silent),
    runCard('referral-hidden', () => api('referral', scoped), () => true, true).catch(() => null),
  ];
  const settled = await Promise.allSettled(runs);
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed && [401, 403, 404].includes(failed.reason.status)) {
    showBanner(failed.reason.message);
  } else if (!failed) {
    showBanner('');
  }
  const [ret, act, conv] = settled.slice(0, 3).map((s) => (s.status === 'fulfilled' ? s.value : null));
  const ref = settled[6].status === 'fulfilled' ? settled[6].value : null;
  if (ret && act && conv && ref) {
    setCard('newest', drawNewest(ret, act, conv, ref) ? 'ready' : 'empty', 'No cohorts yet.');
  } else {
    setCard('newest', 'error', failed ? errorText(failed.reason) : 'Could not load the cohorts.');
  }
  const retry = failed && failed.reason.status === 503 ? (failed.reason.retryAfter || 5) * 1000 : REFRESH_MS;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refresh(true), retry);
}

async function refresh(silent) {
  try {
    await loadFreshness();
  } catch (e) {
    if ([401, 403, 404].includes(e.status)) {
      showBanner(e.message);
      return;
    }
  }
  await loadAll(silent);
}

async function connect() {
  view.community = $('community').value.trim();
  view.key = $('key').value;
  sessionStorage.setItem('readKey', view.key);
  showBanner('');
  try {
    await loadFreshness();
    await loadGroups();
  } catch (e) {
    showBanner(e.status === 503 ? errorText(e) : e.message);
    $('cards').hidden = true;
    $('controls').hidden = true;
    return;
  }
  $('controls').hidden = false;
  $('cards').hidden = false;
  Object.values(charts).forEach((c) => c.resize());
  await loadAll();
}

function writeHash() {
  const h = new URLSearchParams({ community: view.community, group: view.group, granularity: view.granularity, mode: view.mode });
  history.replaceState(null, '', '#' + h);
}

function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  view.group = h.get('group') || '';
  view.granularity = ['day', 'week', 'month'].includes(h.get('granularity')) ? h.get('granularity') : 'week';
  view.mode = MODE_TEXT[h.get('mode')] ? h.get('mode') : 'on';
  $('community').value = h.get('community') || '';
  $('key').value = sessionStorage.getItem('readKey') || '';
  $('granularity').value = view.granularity;
  setModeButtons();
}

function setModeButtons() {
  document.querySelectorAll('.modes button').forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.mode === view.mode)));
}

function setup() {
  // The hidden referral fetch feeds the newest-cohorts table only; it has no card of its own.
  const hidden = document.createElement('section');
  hidden.id = 'card-referral-hidden';
  hidden.hidden = true;
  hidden.innerHTML = '<div class="state"></div>';
  document.body.appendChild(hidden);

  readHash();
  $('connect').addEventListener('submit', (e) => { e.preventDefault(); connect(); });
  $('scope').addEventListener('change', (e) => { view.group = e.target.value; loadAll(); });
  $('granularity').addEventListener('change', (e) => { view.granularity = e.target.value; loadAll(); });
  document.querySelectorAll('.modes button').forEach((b) => b.addEventListener('click', () => {
    view.mode = b.dataset.mode;
    setModeButtons();
    writeHash();
    loadRetention(false).catch(() => {});
  }));
  window.addEventListener('resize', () => Object.values(charts).forEach((c) => c.resize()));
  if ($('community').value && $('key').value) connect();
}

setup();
