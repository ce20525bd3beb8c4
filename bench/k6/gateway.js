// Gateway benchmark: payments ramp from 1 to 600/s (1.5 s client timeout) while a chaos
// scenario reconfigures both simulators and a checker compares payd's summary with the
// simulators' every 10 s, over [now - 15 s, now - 2 s], per processor, like the contest.
import http from 'k6/http';
import { sleep } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';

const PAYD = __ENV.PAYD_URL || 'http://127.0.0.1:9999';
// The gateway's backlog gauge: a process that runs the gateway (a worker behind a balancer).
const METRICS = __ENV.METRICS_URL || PAYD;
const DEFAULT = __ENV.DEFAULT_URL || 'http://127.0.0.1:8001';
const FALLBACK = __ENV.FALLBACK_URL || 'http://127.0.0.1:8002';
const ADMIN = { headers: { 'X-Rinha-Token': '123', 'Content-Type': 'application/json' } };

const accepted = new Counter('payments_accepted');
const inconsistencies = new Counter('inconsistencies');
const transient = new Counter('inconsistencies_transient');
const fallbackWhileHealthy = new Counter('fallback_while_default_healthy');
const drainMs = new Trend('backlog_drain_ms');
const postMs = new Trend('post_payments_ms', true);
const summaryMs = new Trend('summary_ms', true);

// Seconds from the start; the last chaos phase ends at 140 s, then 40 s of recovery load.
const PHASES = [
  [0, 'healthy', { delay: 0, failure: false }, { delay: 0, failure: false }],
  [30, 'default slow 1 s', { delay: 1000, failure: false }, { delay: 0, failure: false }],
  [50, 'default slow 5 s', { delay: 5000, failure: false }, { delay: 0, failure: false }],
  [70, 'default failing', { delay: 0, failure: true }, { delay: 0, failure: false }],
  [90, 'fallback failing', { delay: 0, failure: false }, { delay: 0, failure: true }],
  [105, 'both failing', { delay: 0, failure: true }, { delay: 500, failure: true }],
  [125, 'both slow', { delay: 2000, failure: false }, { delay: 1000, failure: false }],
  [140, 'recovered', { delay: 0, failure: false }, { delay: 0, failure: false }],
];

// POST /payments latency per chaos phase, to see which phase makes the tail.
const postByPhase = PHASES.map((_, i) => new Trend(`post_payments_ms_phase_${i}`, true));

function phaseAt(elapsedMs) {
  let i = 0;
  while (i + 1 < PHASES.length && PHASES[i + 1][0] * 1000 <= elapsedMs) i++;
  return i;
}

export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['med', 'p(99)', 'max'],
  scenarios: {
    payments: {
      executor: 'ramping-arrival-rate', exec: 'pay', startRate: 1, timeUnit: '1s',
      preAllocatedVUs: 200, maxVUs: 1200,
      stages: [{ target: 600, duration: '120s' }, { target: 600, duration: '60s' }],
    },
    chaos: { executor: 'per-vu-iterations', exec: 'chaos', vus: 1, iterations: 1, maxDuration: '185s' },
    checks: {
      executor: 'constant-arrival-rate', exec: 'check', rate: 1, timeUnit: '10s',
      duration: '180s', preAllocatedVUs: 2, startTime: '10s',
    },
  },
};

function uuid() {
  const hex = '0123456789abcdef';
  let s = '';
  for (let i = 0; i < 32; i++) s += hex[Math.floor(Math.random() * 16)];
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-4${s.slice(13, 16)}-a${s.slice(17, 20)}-${s.slice(20, 32)}`;
}

export function pay() {
  const body = JSON.stringify({ correlationId: uuid(), amount: 19.9 });
  const r = http.post(`${PAYD}/payments`, body, {
    headers: { 'Content-Type': 'application/json' }, timeout: '1500ms', tags: { name: 'POST /payments' },
  });
  postMs.add(r.timings.duration);
  postByPhase[phaseAt(Date.now() - exec.scenario.startTime)].add(r.timings.duration);
  if (r.status === 202) accepted.add(1);
}

function configure(url, config) {
  http.put(`${url}/admin/configurations/delay`, JSON.stringify({ delay: config.delay }), ADMIN);
  http.put(`${url}/admin/configurations/failure`, JSON.stringify({ failure: config.failure }), ADMIN);
}

function simTotal(url, query) {
  const r = http.get(`${url}/admin/payments-summary${query}`, Object.assign({ responseType: 'text' }, ADMIN));
  const b = JSON.parse(r.body);
  return [b.totalRequests, Math.round(b.totalAmount * 100)];
}

function backlog() {
  const r = http.get(`${METRICS}/metrics`, { responseType: 'text' });
  const m = /^payd_gateway_backlog (\S+)$/m.exec(r.body || '');
  return m ? Number(m[1]) : NaN;
}

export function chaos() {
  const start = Date.now();
  for (let i = 0; i < PHASES.length; i++) {
    const [at, name, d, f] = PHASES[i];
    const wait = start + at * 1000 - Date.now();
    if (wait > 0) sleep(wait / 1000);
    configure(DEFAULT, d);
    configure(FALLBACK, f);
    console.log(`chaos: ${name}`);
    if (name === 'healthy') {
      // The default is healthy and fast for this whole phase: the fallback must get nothing.
      const before = simTotal(FALLBACK, '')[0];
      sleep(29);
      fallbackWhileHealthy.add(simTotal(FALLBACK, '')[0] - before);
    }
    if (name === 'recovered') {
      const t0 = Date.now();
      while (backlog() > 100 && Date.now() - t0 < 40000) sleep(0.1);
      drainMs.add(Date.now() - t0);
    }
  }
}

export function check() {
  const now = Date.now();
  const q = `?from=${new Date(now - 15000).toISOString()}&to=${new Date(now - 2000).toISOString()}`;
  for (let attempt = 0; attempt < 5; attempt++) {
    const r = http.get(`${PAYD}/payments-summary${q}`, { responseType: 'text', tags: { name: 'GET /payments-summary' } });
    summaryMs.add(r.timings.duration);
    const ours = JSON.parse(r.body);
    const d = simTotal(DEFAULT, q);
    const f = simTotal(FALLBACK, q);
    const same = ours.default.totalRequests === d[0] && Math.round(ours.default.totalAmount * 100) === d[1]
      && ours.fallback.totalRequests === f[0] && Math.round(ours.fallback.totalAmount * 100) === f[1];
    if (same) return;
    if (attempt === 0) transient.add(1);
    sleep(0.3);
  }
  inconsistencies.add(1);
}

export function handleSummary(data) {
  const m = (name) => (data.metrics[name] ? data.metrics[name].values : {});
  const out = {
    post_p50_ms: m('post_payments_ms').med, post_p99_ms: m('post_payments_ms')['p(99)'],
    summary_p50_ms: m('summary_ms').med, summary_p99_ms: m('summary_ms')['p(99)'],
    failed_requests: (m('http_req_failed').passes || 0),
    accepted: m('payments_accepted').count || 0,
    inconsistencies: m('inconsistencies').count || 0,
    inconsistencies_transient: m('inconsistencies_transient').count || 0,
    fallback_while_default_healthy: m('fallback_while_default_healthy').count || 0,
    backlog_drain_ms: m('backlog_drain_ms').max,
    post_by_phase: PHASES.map(([, name], i) => {
      const v = m(`post_payments_ms_phase_${i}`);
      return [name, v.med, v['p(99)'], v.max];
    }),
  };
  return { stdout: JSON.stringify(out) + '\n' };
}
