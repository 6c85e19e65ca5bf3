// Tollgate admin dashboard. Plain browser JavaScript, no build step, no dependencies.
// Everything it shows comes from the admin API ({prefix}/connections, {prefix}/upstreams) and
// GET /metrics, polled every 2 s with the admin token as a Bearer header. The token lives in
// sessionStorage (this tab only) and never in a URL.
'use strict'

;(function () {
  const PREFIX = document.querySelector('meta[name="tollgate-admin-prefix"]').content
  const METRICS_URL = '/metrics'
  const TOKEN_KEY = 'tollgate.adminToken'
  const POLL_MS = 2000
  const MAX_BACKOFF_MS = 15000
  const REQUEST_TIMEOUT_MS = 8000
  const HISTORY_MS = 10 * 60 * 1000
  // The chart shows at least a minute, at most ten, so a fresh page is not one pixel wide.
  const MIN_WINDOW_MS = 60 * 1000

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
    upRows: $('up-rows')
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

  // ---------- formatting ----------

  const nf = new Intl.NumberFormat()
  const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 })
  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })

  function duration (ms) {
    if (!Number.isFinite(ms)) return '—'
    const s = Math.max(0, Math.floor(ms / 1000))
    if (s < 60) return s + ' s'
    const m = Math.floor(s / 60)
    if (m < 60) return m + ' min ' + String(s % 60).padStart(2, '0') + ' s'
    const h = Math.floor(m / 60)
    if (h < 48) return h + ' h ' + String(m % 60).padStart(2, '0') + ' min'
    return Math.floor(h / 24) + ' d ' + (h % 24) + ' h'
  }

  function bytes (n) {
    if (n < 1024) return nf.format(n) + ' B'
    const units = ['kB', 'MB', 'GB', 'TB']
    let v = n / 1024
    let i = 0
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
    return nf1.format(v) + ' ' + units[i]
  }

  function rate (n) {
    if (n === null || !Number.isFinite(n)) return '–'
    return n >= 100 ? nf.format(Math.round(n)) : nf1.format(n)
  }

  const shortId = (id) => id.length > 8 ? id.slice(0, 8) : id

  function setText (node, text) {
    if (node.textContent !== text) node.textContent = text
  }

  function setAttr (node, name, value) {
    if (node.getAttribute(name) !== value) node.setAttribute(name, value)
  }

  // ---------- API ----------

  class AuthError extends Error {}
  class ApiError extends Error {
    constructor (status, message) { super(message); this.status = status }
  }

  /** fetch with the Bearer token, a timeout, and errors that say what went wrong. */
  async function request (url, { method = 'GET', body, accept = 'application/json', token = state.token } = {}) {
    const headers = { accept, authorization: 'Bearer ' + token }
    if (body !== undefined) headers['content-type'] = 'application/json'
    let res
    try {
      res = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS)
      })
    } catch (err) {
      throw new ApiError(0, err && err.name === 'TimeoutError' ? 'no answer within ' + REQUEST_TIMEOUT_MS / 1000 + ' s' : 'network error')
    }
    if (res.status === 401) throw new AuthError('unauthorized')
    const text = await res.text()
    if (!res.ok) {
      let message = 'HTTP ' + res.status
      try { const j = JSON.parse(text); if (j && j.message) message += ': ' + j.message } catch { /* not JSON */ }
      throw new ApiError(res.status, message)
    }
    if (accept !== 'application/json') return text
    return text === '' ? null : JSON.parse(text)
  }

  const api = (path, opts) => request(PREFIX + path, opts)

  function listQuery (route, user, limit, offset) {
    const q = new URLSearchParams()
    if (route !== '') q.set('route', route)
    if (user !== '') q.set('user', user)
    q.set('limit', String(limit))
    q.set('offset', String(offset))
    return q.toString()
  }

  // ---------- Prometheus text ----------

  function unescapeLabel (s) {
    return s.replace(/\\(["\\n])/g, (_m, c) => c === 'n' ? '\n' : c)
  }

  /** Samples of one metric family: [{ labels, value }]. */
  function samples (text, name) {
    const out = []
    const head = name + '{'
    for (const line of text.split('\n')) {
      if (!line.startsWith(name)) continue
      let labels = {}
      let rest
      if (line.startsWith(head)) {
        const end = line.lastIndexOf('}')
        if (end < 0) continue
        const re = /(\w+)="((?:[^"\\]|\\.)*)"/g
        let m
        while ((m = re.exec(line.slice(head.length, end))) !== null) labels[m[1]] = unescapeLabel(m[2])
        rest = line.slice(end + 1)
      } else if (line[name.length] === ' ') {
        rest = line.slice(name.length)
      } else {
        continue
      }
      const value = Number(rest.trim().split(/\s+/)[0])
      if (Number.isFinite(value)) out.push({ labels, value })
    }
    return out
  }

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
        signOut('The gateway no longer accepts this admin token (401). Sign in again.')
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
    const filtered = route !== '' || user !== ''
    const [page, all, ups, metrics] = await Promise.all([
      api('/connections?' + query),
      // The chart counts every connection, whatever the table's filter.
      filtered ? api('/connections?limit=1') : null,
      api('/upstreams'),
      request(METRICS_URL, { accept: 'text/plain' }).catch((err) => {
        if (err instanceof AuthError) return new ApiError(401, 'HTTP 401')
        if (err instanceof ApiError && err.status !== 0) return err
        throw err
      })
    ])
    const now = performance.now()
    const activeTotal = (all ?? page).total
    let messages = null
    let byRoute = null
    if (metrics instanceof ApiError) {
      state.metricsError = 'metrics unavailable (' + metrics.message + ')'
    } else {
      state.metricsError = null
      messages = samples(metrics, 'tollgate_websocket_messages_total').reduce((sum, s) => sum + s.value, 0)
      byRoute = new Map()
      for (const s of samples(metrics, 'tollgate_websocket_connections_active')) if (s.value > 0) byRoute.set(s.labels.route, s.value)
      const names = new Set(byRoute.keys())
      for (const s of samples(metrics, 'tollgate_websocket_handshakes_total')) if (s.labels.route) names.add(s.labels.route)
      renderRouteNames(names)
    }
    let mps = null
    const prev = state.lastMessages
    if (messages !== null) {
      // A counter that went down means the gateway restarted: skip one point rather than plot a dive.
      if (prev !== null && messages >= prev.value && now > prev.at) mps = (messages - prev.value) / ((now - prev.at) / 1000)
      state.lastMessages = { value: messages, at: now }
    } else {
      state.lastMessages = null
    }
    pushHistory(activeTotal, mps, now)
    renderSummary(activeTotal, mps, byRoute, page, filtered)
    renderUpstreams(ups.upstreams)
    // A filter or page change while this request was out: draw the answer to the new question instead.
    if (query !== listQuery(state.route, state.user, state.limit, state.offset)) { again = true; return }
    if (page.total > 0 && offset >= page.total) {
      state.offset = Math.floor((page.total - 1) / limit) * limit
      again = true
    }
    renderConnections(page)
  }

  // ---------- history and charts ----------

  function pushHistory (active, mps, at = performance.now()) {
    const h = state.history
    h.push({ at, active, mps })
    while (h.length > 0 && at - h[0].at > HISTORY_MS) h.shift()
    drawCharts()
  }

  const SVG = 'http://www.w3.org/2000/svg'
  function svgEl (name, attrs) {
    const n = document.createElementNS(SVG, name)
    for (const k in attrs) n.setAttribute(k, attrs[k])
    return n
  }

  function niceMax (v) {
    if (v <= 0) return 1
    const p = 10 ** Math.floor(Math.log10(v))
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p
    return 10 * p
  }

  function drawCharts () {
    drawChart(el.chartActive, 'active', 'Active connections', (v) => nf.format(v))
    drawChart(el.chartMps, 'mps', 'Messages per second', rate)
  }

  function drawChart (svg, key, title, fmt) {
    const width = Math.max(200, Math.round(svg.clientWidth || 320))
    const height = Math.max(80, Math.round(svg.clientHeight || 120))
    const pad = { left: 38, right: 8, top: 8, bottom: 18 }
    const h = state.history
    const now = performance.now()
    const span = Math.min(HISTORY_MS, Math.max(MIN_WINDOW_MS, h.length > 0 ? now - h[0].at : 0))
    const x0 = now - span
    const values = h.map((p) => p[key]).filter((v) => v !== null)
    const max = niceMax(Math.max(0, ...values))
    const x = (t) => pad.left + (width - pad.left - pad.right) * (t - x0) / span
    const y = (v) => pad.top + (height - pad.top - pad.bottom) * (1 - v / max)

    svg.setAttribute('viewBox', '0 0 ' + width + ' ' + height)
    svg.replaceChildren()
    for (const f of [0, 0.5, 1]) {
      const gy = y(max * f)
      svg.append(svgEl('line', { class: 'grid-line', x1: pad.left, x2: width - pad.right, y1: gy, y2: gy }))
      const label = svgEl('text', { class: 'axis', x: pad.left - 6, y: gy + 4, 'text-anchor': 'end' })
      label.textContent = fmt(max * f)
      svg.append(label)
    }
    const from = svgEl('text', { class: 'axis', x: pad.left, y: height - 4, 'text-anchor': 'start' })
    from.textContent = '−' + Math.round(span / 60000) + ' min'
    const to = svgEl('text', { class: 'axis', x: width - pad.right, y: height - 4, 'text-anchor': 'end' })
    to.textContent = 'now'
    svg.append(from, to)

    // Segments break where a poll failed or polls were far apart (a sleeping laptop).
    let line = ''
    let area = ''
    let segment = []
    const flush = () => {
      if (segment.length === 0) return
      line += 'M' + segment.map(([px, py]) => px.toFixed(1) + ',' + py.toFixed(1)).join('L')
      if (segment.length > 1) {
        area += 'M' + segment[0][0].toFixed(1) + ',' + y(0).toFixed(1) + 'L' +
          segment.map(([px, py]) => px.toFixed(1) + ',' + py.toFixed(1)).join('L') +
          'L' + segment[segment.length - 1][0].toFixed(1) + ',' + y(0).toFixed(1) + 'Z'
      }
      segment = []
    }
    let prevAt = null
    for (const p of h) {
      if (p[key] === null || (prevAt !== null && p.at - prevAt > 3 * POLL_MS + 1000)) flush()
      if (p[key] !== null) segment.push([x(p.at), y(p[key])])
      prevAt = p.at
    }
    flush()
    if (area !== '') svg.append(svgEl('path', { class: 'area', d: area }))
    if (line !== '') svg.append(svgEl('path', { class: 'line', d: line }))
    const last = [...h].reverse().find((p) => p[key] !== null)
    if (last !== undefined) svg.append(svgEl('circle', { class: 'dot', cx: x(last.at), cy: y(last[key]), r: 3 }))

    const peak = values.length > 0 ? Math.max(...values) : null
    setAttr(svg, 'aria-label', last === undefined
      ? title + ': no data yet'
      : title + ' over the last ' + Math.round(span / 60000) + ' min: now ' + fmt(last[key]) + ', peak ' + fmt(peak))
  }

  // ---------- summary ----------

  let routesKey = ''
  function renderSummary (total, mps, byRoute, page, filtered) {
    setText(el.total, nf.format(total))
    setText(el.totalNote, page.partial ? '(partial: some instances did not answer)' : '')
    setText(el.mps, state.metricsError === null ? rate(mps) : '–')
    setText(el.mpsNote, state.metricsError ?? (mps === null ? 'measuring…' : 'both directions'))

    // By route from the gauge in /metrics (this instance); without metrics, from the rows when
    // the page holds every connection.
    let counts = byRoute
    let note = ''
    if (counts === null) {
      if (!filtered && page.total <= page.connections.length) {
        counts = new Map()
        for (const c of page.connections) counts.set(c.route, (counts.get(c.route) ?? 0) + 1)
      } else {
        note = state.metricsError ?? ''
      }
    }
    const entries = counts === null ? [] : [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    if (counts !== null && entries.length === 0) note = 'No open connections.'
    setText(el.byRouteNote, note)
    const key = JSON.stringify(entries)
    if (key === routesKey) return
    routesKey = key
    const max = entries.length > 0 ? entries[0][1] : 1
    el.byRoute.replaceChildren(...entries.map(([route, n]) => {
      const li = document.createElement('li')
      const name = document.createElement('button')
      name.type = 'button'
      name.className = 'linkish route-name'
      name.textContent = route
      name.title = 'Show only ' + route
      name.addEventListener('click', () => { el.fRoute.value = route; applyFilters() })
      const count = document.createElement('span')
      count.className = 'count'
      count.textContent = nf.format(n)
      const track = document.createElement('span')
      track.className = 'bar'
      track.setAttribute('aria-hidden', 'true')
      const fill = document.createElement('span')
      // CSSOM, not a style attribute: the CSP allows no inline styles.
      fill.style.width = Math.max(2, Math.round(100 * n / max)) + '%'
      track.append(fill)
      li.append(name, track, count)
      return li
    }))
  }

  let routeNamesKey = ''
  function renderRouteNames (names) {
    const sorted = [...names].sort()
    const key = sorted.join('\n')
    if (key === routeNamesKey) return
    routeNamesKey = key
    el.routeNames.replaceChildren(...sorted.map((r) => { const o = document.createElement('option'); o.value = r; return o }))
  }

  // ---------- connections table ----------

  /** id -> { tr, cells, detail (the send-message row or null), data } */
  const rowsById = new Map()
  const COLUMNS = ['id', 'route', 'userId', 'clientIp', 'upstream', 'age', 'idle', 'rttMs',
    'messagesFromClient', 'messagesToClient', 'bytesFromClient', 'bytesToClient']
  const NUMERIC = new Set(['age', 'idle', 'rttMs', 'messagesFromClient', 'messagesToClient', 'bytesFromClient', 'bytesToClient'])

  function sortValue (c, key, now) {
    switch (key) {
      case 'age': return now - Date.parse(c.connectedAt)
      case 'idle': return now - Date.parse(c.lastActivityAt)
      case 'userId': return c.userId ?? ''
      case 'rttMs': return c.rttMs ?? Infinity
      default: return c[key]
    }
  }

  function sortRows (list) {
    const now = Date.now()
    const { sortKey, sortDir } = state
    return list.slice().sort((a, b) => {
      const va = sortValue(a, sortKey, now)
      const vb = sortValue(b, sortKey, now)
      const d = NUMERIC.has(sortKey) ? va - vb : String(va).localeCompare(String(vb))
      return (d || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)) * sortDir
    })
  }

  function createRow (c) {
    const tr = document.createElement('tr')
    tr.dataset.id = c.id
    const cells = {}
    for (const col of COLUMNS) {
      const td = document.createElement('td')
      if (NUMERIC.has(col)) td.className = 'num'
      cells[col] = td
      tr.append(td)
    }
    const idCode = document.createElement('code')
    cells.id.append(idCode)
    cells.id.className = 'id'
    cells.upstream.className = 'upstream'

    const actions = document.createElement('td')
    actions.className = 'actions'
    const msg = document.createElement('button')
    msg.type = 'button'
    msg.className = 'btn small'
    msg.textContent = 'Message'
    msg.setAttribute('aria-expanded', 'false')
    msg.setAttribute('aria-label', 'Send a message to connection ' + shortId(c.id))
    msg.addEventListener('click', () => toggleMessageRow(c.id))
    const close = document.createElement('button')
    close.type = 'button'
    close.className = 'btn small danger'
    close.textContent = 'Close'
    close.setAttribute('aria-label', 'Close connection ' + shortId(c.id))
    close.addEventListener('click', () => closeConnection(c.id))
    actions.append(msg, close)
    tr.append(actions)
    return { tr, cells, msgButton: msg, detail: null, data: c }
  }

  function updateRow (r, c) {
    r.data = c
    const now = Date.now()
    const { cells } = r
    setText(cells.id.firstChild, shortId(c.id))
    setAttr(cells.id, 'title', c.id + (c.instanceId ? '\ninstance ' + c.instanceId : ''))
    setText(cells.route, c.route)
    setAttr(cells.route, 'title', c.path + (c.subprotocol ? '\nsubprotocol ' + c.subprotocol : ''))
    setText(cells.userId, c.userId ?? 'anonymous')
    cells.userId.classList.toggle('muted', c.userId === null)
    setText(cells.clientIp, c.clientIp)
    setText(cells.upstream, c.upstream)
    setAttr(cells.upstream, 'title', c.upstream)
    setText(cells.age, duration(now - Date.parse(c.connectedAt)))
    setAttr(cells.age, 'title', 'connected ' + c.connectedAt)
    setText(cells.idle, duration(now - Date.parse(c.lastActivityAt)) + ' ago')
    setAttr(cells.idle, 'title', c.lastActivityAt)
    setText(cells.rttMs, c.rttMs === null ? '—' : nf1.format(c.rttMs) + ' ms')
    setText(cells.messagesFromClient, nf.format(c.messagesFromClient))
    setText(cells.messagesToClient, nf.format(c.messagesToClient))
    setText(cells.bytesFromClient, bytes(c.bytesFromClient))
    setText(cells.bytesToClient, bytes(c.bytesToClient))
  }

  function renderConnections (page) {
    state.total = page.total
    state.partial = page.partial === true
    const active = document.activeElement
    // While someone types in a row's message box, do not re-sort under their hands: moving a
    // row would also take the focus away. New rows still appear (at the end), gone ones go.
    const freeze = active !== null && active.tagName === 'INPUT' && el.rows.contains(active)
    let list = sortRows(page.connections)
    if (freeze) {
      const pos = new Map()
      let i = 0
      for (const tr of el.rows.children) if (!tr.classList.contains('detail')) pos.set(tr.dataset.id, i++)
      list = list.slice().sort((a, b) => (pos.get(a.id) ?? Infinity) - (pos.get(b.id) ?? Infinity))
    }

    const seen = new Set()
    let prev = null
    for (const c of list) {
      seen.add(c.id)
      let r = rowsById.get(c.id)
      if (r === undefined) { r = createRow(c); rowsById.set(c.id, r) }
      updateRow(r, c)
      // Keyed placement: only rows that are out of place move, so the table neither flickers
      // nor loses its scroll position.
      const want = prev === null ? el.rows.firstChild : prev.nextSibling
      if (want !== r.tr) el.rows.insertBefore(r.tr, want)
      prev = r.tr
      if (r.detail !== null) {
        if (prev.nextSibling !== r.detail) el.rows.insertBefore(r.detail, prev.nextSibling)
        prev = r.detail
      }
    }
    for (const [id, r] of rowsById) if (!seen.has(id)) dropRow(id, r)

    el.empty.hidden = page.connections.length > 0
    setText(el.empty, state.route !== '' || state.user !== '' ? 'No connection matches the filter.' : 'No open connections.')
    renderPager(page.connections.length)
  }

  function dropRow (id, r = rowsById.get(id)) {
    if (r === undefined) return
    r.tr.remove()
    if (r.detail !== null) r.detail.remove()
    rowsById.delete(id)
  }

  function renderPager (shown) {
    const { offset, limit, total } = state
    const first = total === 0 ? 0 : offset + 1
    const last = offset + shown
    setText(el.pageInfo, total === 0 ? 'No rows' : 'Rows ' + nf.format(first) + '–' + nf.format(last) + ' of ' + nf.format(total))
    el.pageFirst.disabled = el.pagePrev.disabled = offset === 0
    el.pageNext.disabled = el.pageLast.disabled = offset + limit >= total
    setText(el.sortNote, total > limit ? 'Sorting applies within this page; pages follow connection time.' : '')
  }

  function renderSortHeaders () {
    for (const th of document.querySelectorAll('#conn-table th[data-sort]')) {
      const on = th.dataset.sort === state.sortKey
      if (on) th.setAttribute('aria-sort', state.sortDir === 1 ? 'ascending' : 'descending')
      else th.removeAttribute('aria-sort')
    }
  }

  function resort () {
    renderSortHeaders()
    const list = [...rowsById.values()].map((r) => r.data)
    renderConnections({ total: state.total, partial: state.partial, connections: list })
  }

  // ---------- per-connection actions ----------

  function toggleMessageRow (id) {
    const r = rowsById.get(id)
    if (r === undefined) return
    if (r.detail !== null) {
      r.detail.remove()
      r.detail = null
      r.msgButton.setAttribute('aria-expanded', 'false')
      r.msgButton.focus()
      return
    }
    const tr = document.createElement('tr')
    tr.className = 'detail'
    const td = document.createElement('td')
    td.colSpan = COLUMNS.length + 1
    const form = document.createElement('form')
    form.className = 'send'
    const inputId = 'msg-' + id
    const label = document.createElement('label')
    label.htmlFor = inputId
    label.textContent = 'Message to ' + shortId(id)
    const input = document.createElement('input')
    input.id = inputId
    input.type = 'text'
    input.autocomplete = 'off'
    input.placeholder = 'text to push to this client'
    const binLabel = document.createElement('label')
    binLabel.className = 'check'
    const bin = document.createElement('input')
    bin.type = 'checkbox'
    binLabel.append(bin, ' binary (base64)')
    const send = document.createElement('button')
    send.type = 'submit'
    send.className = 'btn small primary'
    send.textContent = 'Send'
    const out = document.createElement('output')
    out.className = 'send-status'
    out.setAttribute('role', 'status')
    form.append(label, input, binLabel, send, out)
    form.addEventListener('submit', async (e) => {
      e.preventDefault()
      const value = input.value
      const body = bin.checked ? { binary: value.trim() } : { text: value }
      send.disabled = true
      out.className = 'send-status'
      out.textContent = 'Sending…'
      try {
        await api('/connections/' + encodeURIComponent(id) + '/messages', { method: 'POST', body })
        out.textContent = 'Sent at ' + timeFmt.format(new Date())
        out.classList.add('ok')
        input.value = ''
      } catch (err) {
        if (err instanceof AuthError) { signOut('The gateway no longer accepts this admin token (401). Sign in again.'); return }
        out.textContent = err.status === 404 ? 'Not sent: the connection is gone.' : 'Not sent: ' + err.message
        out.classList.add('bad')
      } finally {
        send.disabled = false
      }
    })
    td.append(form)
    tr.append(td)
    r.detail = tr
    r.tr.after(tr)
    r.msgButton.setAttribute('aria-expanded', 'true')
    input.focus()
  }

  async function closeConnection (id) {
    const r = rowsById.get(id)
    const what = r === undefined ? id : shortId(id) + ' (' + r.data.route + ', ' + (r.data.userId ?? 'anonymous') + ')'
    if (!window.confirm('Close connection ' + what + '?\nThe client gets close code 1008 "closed by administrator"; its upstream connection is closed too.')) return
    try {
      await api('/connections/' + encodeURIComponent(id), { method: 'DELETE' })
      notice('Closed connection ' + shortId(id) + '.', 'ok')
    } catch (err) {
      if (err instanceof AuthError) { signOut('The gateway no longer accepts this admin token (401). Sign in again.'); return }
      if (err.status === 404) notice('Connection ' + shortId(id) + ' was already gone.', 'ok')
      else { notice('Could not close ' + shortId(id) + ': ' + err.message, 'bad'); return }
    }
    if (r !== undefined && r.tr.contains(document.activeElement)) el.tableWrap.focus()
    dropRow(id)
    void tick()
  }

  let noticeTimer = null
  function notice (text, kind) {
    el.notice.textContent = text
    el.notice.className = 'notice ' + kind
    clearTimeout(noticeTimer)
    noticeTimer = setTimeout(() => { el.notice.textContent = ''; el.notice.className = 'notice' }, 8000)
  }

  // ---------- upstreams ----------

  let upstreamsKey = ''
  function renderUpstreams (upstreams) {
    const key = JSON.stringify(upstreams)
    if (key === upstreamsKey) return
    upstreamsKey = key
    const rows = []
    for (const u of upstreams) {
      u.targets.forEach((t, i) => {
        const tr = document.createElement('tr')
        const cell = (text, cls) => { const td = document.createElement('td'); td.textContent = text; if (cls) td.className = cls; tr.append(td); return td }
        const name = cell(i === 0 ? u.name : '')
        if (i === 0) name.className = 'strong'
        cell(t.url, 'upstream')
        const health = cell('')
        const badge = document.createElement('span')
        badge.className = 'badge ' + (t.health === 'healthy' ? 'good' : t.health === 'unchecked' ? (t.healthy ? 'neutral' : 'bad') : 'bad')
        badge.textContent = t.health
        health.append(badge)
        if (t.downUntil) health.append(' until ' + timeFmt.format(new Date(t.downUntil)))
        cell(nf.format(t.openConnections), 'num')
        cell(nf.format(t.inFlight), 'num')
        cell(i === 0 ? u.balance : '', 'muted')
        cell(t.lastError ?? '', 'error-text')
        rows.push(tr)
      })
    }
    if (rows.length === 0) {
      const tr = document.createElement('tr')
      const td = document.createElement('td')
      td.colSpan = 7
      td.className = 'muted'
      td.textContent = 'No upstreams configured.'
      tr.append(td)
      rows.push(tr)
    }
    el.upRows.replaceChildren(...rows)
  }

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
    renderSortHeaders()
    void tick()
  }

  function signOut (message) {
    sessionStorage.removeItem(TOKEN_KEY)
    state.token = null
    clearTimeout(timer)
    for (const [id, r] of rowsById) dropRow(id, r)
    state.history = []
    state.lastMessages = null
    state.lastOkAt = null
    state.failures = 0
    routesKey = upstreamsKey = ''
    showLogin(message)
  }

  el.loginForm.addEventListener('submit', async (e) => {
    e.preventDefault()
    const token = el.token.value.trim()
    if (token === '') { showLogin('Enter the admin token.'); return }
    el.loginSubmit.disabled = true
    el.loginError.textContent = ''
    try {
      await request(PREFIX + '/connections?limit=1', { token })
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

  // ---------- filters, paging, sorting ----------

  let filterTimer = null
  function applyFilters () {
    clearTimeout(filterTimer)
    const route = el.fRoute.value.trim()
    const user = el.fUser.value.trim()
    const limit = Number(el.pageSize.value)
    if (route === state.route && user === state.user && limit === state.limit) return
    state.route = route
    state.user = user
    state.limit = limit
    state.offset = 0
    el.tableWrap.scrollTop = 0
    void tick()
  }
  const applySoon = () => { clearTimeout(filterTimer); filterTimer = setTimeout(applyFilters, 300) }
  el.fRoute.addEventListener('input', applySoon)
  el.fUser.addEventListener('input', applySoon)
  el.fRoute.addEventListener('change', applyFilters)
  el.fUser.addEventListener('change', applyFilters)
  el.pageSize.addEventListener('change', applyFilters)
  el.filters.addEventListener('submit', (e) => { e.preventDefault(); applyFilters() })
  // Clears the filters only: the page size stays as chosen.
  $('clear-filters').addEventListener('click', () => { el.fRoute.value = ''; el.fUser.value = ''; applyFilters() })

  function goTo (offset) {
    const lastPage = Math.max(0, Math.floor((state.total - 1) / state.limit) * state.limit)
    const next = Math.min(Math.max(0, offset), lastPage)
    if (next === state.offset) return
    state.offset = next
    el.tableWrap.scrollTop = 0
    void tick()
  }
  el.pageFirst.addEventListener('click', () => goTo(0))
  el.pagePrev.addEventListener('click', () => goTo(state.offset - state.limit))
  el.pageNext.addEventListener('click', () => goTo(state.offset + state.limit))
  el.pageLast.addEventListener('click', () => goTo(Infinity))

  for (const th of document.querySelectorAll('#conn-table th[data-sort]')) {
    th.querySelector('button').addEventListener('click', () => {
      const key = th.dataset.sort
      if (state.sortKey === key) state.sortDir = -state.sortDir
      else { state.sortKey = key; state.sortDir = key === 'age' ? -1 : 1 }
      resort()
    })
  }

  let resizeTimer = null
  window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawCharts, 100) })

  // ---------- start ----------

  if (state.token === null) showLogin()
  else showDashboard()
})()
