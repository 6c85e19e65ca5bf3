// Tollgate admin dashboard: the entry module (index.html loads it as <script type="module">).
// Plain browser JavaScript in ES modules, no build step, no dependencies. Everything it shows
// comes from the admin API ({prefix}/connections, {prefix}/upstreams) and GET /metrics, polled
// every 2 s with the admin token as a Bearer header. The token lives in sessionStorage (this tab
// only) and never in a URL.
// This module holds the state, the sign-in, the polling, the summary cards and the banner; it
// wires together api.js (the client), metrics.js (the Prometheus text), charts.js (the charts),
// table.js (the connections table) and upstreams.js (the upstream targets and their actions).
import { ApiError, AuthError, createClient, listQuery } from './api.js'
import { drawChart, drawRouteBars, HISTORY_MS } from './charts.js'
import { setText } from './dom.js'
import { nf, rate, timeFmt } from './format.js'
import { counterRate, dashboardMetrics } from './metrics.js'
import { createTable } from './table.js'
import { createUpstreamsPanel } from './upstreams.js'

const PREFIX = document.querySelector('meta[name="tollgate-admin-prefix"]').content
const TOKEN_KEY = 'tollgate.adminToken'
const POLL_MS = 2000
const MAX_BACKOFF_MS = 15000
// A chart's line breaks where polls were further apart than this (a failed poll breaks it too).
const CHART_GAP_MS = 3 * POLL_MS + 1000
const REJECTED = 'The gateway no longer accepts this admin token (401). Sign in again.'

const $ = (id) => document.getElementById(id)
const el = {
  live: $('live'),
  signout: $('signout'),
  banner: $('banner'),
  bannerText: $('banner-text'),
  retry: $('retry'),
  login: $('login'),
  loginForm: $('login-form'),
  token: $('token'),
  loginError: $('login-error'),
  loginSubmit: $('login-submit'),
  dashboard: $('dashboard'),
  total: $('total'),
  totalNote: $('total-note'),
  mps: $('mps'),
  mpsNote: $('mps-note'),
  chartActive: $('chart-active'),
  chartMps: $('chart-mps'),
  byRoute: $('by-route'),
  byRouteNote: $('by-route-note'),
  filters: $('filters'),
  fRoute: $('f-route'),
  fUser: $('f-user'),
  routeNames: $('route-names'),
  pageSize: $('page-size'),
  clearFilters: $('clear-filters'),
  notice: $('notice'),
  tableWrap: $('table-wrap'),
  rows: $('conn-rows'),
  empty: $('empty'),
  pageFirst: $('page-first'),
  pagePrev: $('page-prev'),
  pageNext: $('page-next'),
  pageLast: $('page-last'),
  pageInfo: $('page-info'),
  sortNote: $('sort-note'),
  upRows: $('up-rows'),
  upNotice: $('up-notice')
}

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  route: '',
  user: '',
  limit: Number(el.pageSize.value),
  offset: 0,
  // Default: oldest first, which is also the server's order (by connectedAt).
  sortKey: 'age',
  sortDir: -1,
  total: 0,
  partial: false,
  lastOkAt: null,
  failures: 0,
  history: [],
  lastMessages: null,
  metricsError: null
}

const client = createClient(PREFIX, () => state.token)
const table = createTable({ el, state, client, refresh: tick, onAuthError: () => signOut(REJECTED) })

// ---------- polling ----------

let timer = null
let running = false
let again = false

/** One refresh now (or right after the one in flight), then every POLL_MS; backs off while failing. */
async function tick () {
  if (state.token === null) return
  if (running) { again = true; return }
  running = true
  clearTimeout(timer)
  try {
    await refresh()
    state.failures = 0
    state.lastOkAt = new Date()
    hideBanner()
  } catch (err) {
    running = false
    if (err instanceof AuthError) {
      signOut(REJECTED)
      return
    }
    state.failures++
    pushHistory(null, null)
    showBanner(err)
  }
  running = false
  if (state.token === null) return
  if (again) { again = false; void tick(); return }
  const delay = state.failures === 0 ? POLL_MS : Math.min(POLL_MS * 2 ** (state.failures - 1), MAX_BACKOFF_MS)
  timer = setTimeout(tick, delay)
}

async function refresh () {
  const { route, user, limit, offset } = state
  const query = listQuery(route, user, limit, offset)
  const [page, totals, ups, metrics] = await Promise.all([
    client.connections(query),
    // The chart and the summary count every connection, whatever the table's filter.
    client.connectionTotals(),
    client.upstreams(),
    client.metrics()
  ])
  const now = performance.now()
  const activeTotal = totals.total
  let messages = null
  if (metrics instanceof ApiError) {
    state.metricsError = 'metrics unavailable (' + metrics.message + ')'
  } else {
    state.metricsError = null
    const m = dashboardMetrics(metrics)
    messages = m.messages
    table.renderRouteNames(m.routeNames)
  }
  let mps = null
  if (messages !== null) {
    mps = counterRate(state.lastMessages, messages, now)
    state.lastMessages = { value: messages, at: now }
  } else {
    state.lastMessages = null
  }
  // By route from the totals: every instance's connections (the gauge in /metrics is this instance's).
  const byRoute = new Map(Object.entries(totals.routes))
  pushHistory(activeTotal, mps, now)
  renderSummary(activeTotal, mps, byRoute, page, totals)
  renderUpstreams(ups.upstreams)
  // A filter or page change while this request was out: draw the answer to the new question instead.
  if (query !== listQuery(state.route, state.user, state.limit, state.offset)) { again = true; return }
  if (page.total > 0 && offset >= page.total) {
    state.offset = Math.floor((page.total - 1) / limit) * limit
    again = true
  }
  table.renderConnections(page)
}

// ---------- history and charts ----------

function pushHistory (active, mps, at = performance.now()) {
  const h = state.history
  h.push({ at, active, mps })
  while (h.length > 0 && at - h[0].at > HISTORY_MS) h.shift()
  drawCharts()
}

function drawCharts () {
  drawChart(el.chartActive, state.history, 'active', 'Active connections', (v) => nf.format(v), CHART_GAP_MS)
  drawChart(el.chartMps, state.history, 'mps', 'Messages per second', rate, CHART_GAP_MS)
}

// ---------- summary ----------

let routesKey = ''
function renderSummary (total, mps, byRoute, page, totals) {
  setText(el.total, nf.format(total))
  const instances = totals.instances.length > 1 ? 'on ' + nf.format(totals.instances.length) + ' instances ' : ''
  setText(el.totalNote, instances + (page.partial || totals.partial ? '(partial: some instances did not answer)' : ''))
  setText(el.mps, state.metricsError === null ? rate(mps) : '–')
  setText(el.mpsNote, state.metricsError ?? (mps === null ? 'measuring…' : 'both directions'))

  // By route, from the totals: every instance's connections, without listing them.
  const entries = [...byRoute].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
  setText(el.byRouteNote, entries.length === 0 ? 'No open connections.' : '')
  const key = JSON.stringify(entries)
  if (key === routesKey) return
  routesKey = key
  drawRouteBars(el.byRoute, entries, table.filterRoute)
}

// ---------- upstreams ----------

const upstreamsPanel = createUpstreamsPanel({
  client,
  tbody: el.upRows,
  notify: (text, isError = false) => {
    el.upNotice.className = 'notice ' + (isError ? 'bad' : 'ok')
    el.upNotice.textContent = text
  },
  // A change shows at once rather than at the next poll.
  changed: () => { void tick() }
})
const renderUpstreams = (upstreams) => upstreamsPanel.render(upstreams)

// ---------- banner and live status ----------

function showBanner (err) {
  const delay = Math.min(POLL_MS * 2 ** (state.failures - 1), MAX_BACKOFF_MS)
  const since = state.lastOkAt === null ? '' : ' Showing data from ' + timeFmt.format(state.lastOkAt) + '.'
  const what = err.status === 0 || err.status === undefined
    ? 'Cannot reach the gateway admin API (' + err.message + ').'
    : 'The gateway admin API answered with an error (' + err.message + ').'
  el.bannerText.textContent = what + since + ' Retrying in ' + Math.round(delay / 1000) + ' s…'
  el.banner.hidden = false
  el.dashboard.classList.add('stale')
  el.live.className = 'live down'
  setText(el.live, 'Offline')
}

function hideBanner () {
  el.banner.hidden = true
  el.dashboard.classList.remove('stale')
  el.live.className = 'live up'
  setText(el.live, 'Live · updated ' + timeFmt.format(state.lastOkAt))
}

// ---------- sign in / out ----------

function showLogin (message) {
  el.dashboard.hidden = true
  el.banner.hidden = true
  el.signout.hidden = true
  el.login.hidden = false
  el.live.className = 'live'
  el.live.textContent = ''
  el.loginError.textContent = message ?? ''
  el.token.setAttribute('aria-invalid', message ? 'true' : 'false')
  el.token.focus()
}

function showDashboard () {
  el.login.hidden = true
  el.dashboard.hidden = false
  el.signout.hidden = false
  table.renderSortHeaders()
  void tick()
}

function signOut (message) {
  sessionStorage.removeItem(TOKEN_KEY)
  state.token = null
  clearTimeout(timer)
  table.clear()
  state.history = []
  state.lastMessages = null
  state.lastOkAt = null
  state.failures = 0
  routesKey = ''
  upstreamsPanel.reset()
  el.upNotice.textContent = ''
  showLogin(message)
}

el.loginForm.addEventListener('submit', async (e) => {
  e.preventDefault()
  const token = el.token.value.trim()
  if (token === '') { showLogin('Enter the admin token.'); return }
  el.loginSubmit.disabled = true
  el.loginError.textContent = ''
  try {
    await client.checkToken(token)
  } catch (err) {
    el.loginSubmit.disabled = false
    showLogin(err instanceof AuthError
      ? 'Wrong admin token: the gateway answered 401 Unauthorized. Check admin.token (or ADMIN_TOKEN) in the gateway configuration.'
      : 'Cannot reach the gateway admin API (' + err.message + '). Try again.')
    el.token.select()
    return
  }
  el.loginSubmit.disabled = false
  el.token.value = ''
  sessionStorage.setItem(TOKEN_KEY, token)
  state.token = token
  showDashboard()
})

el.signout.addEventListener('click', () => signOut(''))
el.retry.addEventListener('click', () => { void tick() })

let resizeTimer = null
window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawCharts, 100) })

// ---------- start ----------

if (state.token === null) showLogin()
else showDashboard()
