// The connections table: its rows (created once per connection, updated in place), sorting within
// the page, the pager, the filters (route, user, rows per page) and the route suggestions, and the
// row actions (send a message, close). Every server string goes in as text, never as HTML.
import { AuthError } from './api.js'
import { setAttr, setText } from './dom.js'
import { bytes, duration, nf, nf1, shortId, timeFmt } from './format.js'

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

/**
 * The table over the elements of `el` (app.js's), reading and writing the shared `state`: the
 * filter (route, user), the page (limit, offset), the sort (sortKey, sortDir) and the last answer's
 * total and partial. `refresh()` asks for a poll now; `onAuthError()` is called when the gateway
 * rejects the token during a row action. Wires the filter, pager and column-header controls.
 */
export function createTable ({ el, state, client, refresh, onAuthError }) {
  /** id -> { tr, cells, detail (the send-message row or null), data } */
  const rowsById = new Map()

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

  /** Draws one answer of GET {prefix}/connections: { total, partial, connections }. */
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

  /** Removes every row (signing out). */
  function clear () {
    for (const [id, r] of rowsById) dropRow(id, r)
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

  let routeNamesKey = ''
  /** The route filter's suggestions (a <datalist>). */
  function renderRouteNames (names) {
    const sorted = [...names].sort()
    const key = sorted.join('\n')
    if (key === routeNamesKey) return
    routeNamesKey = key
    el.routeNames.replaceChildren(...sorted.map((r) => { const o = document.createElement('option'); o.value = r; return o }))
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
        await client.sendMessage(id, body)
        out.textContent = 'Sent at ' + timeFmt.format(new Date())
        out.classList.add('ok')
        input.value = ''
      } catch (err) {
        if (err instanceof AuthError) { onAuthError(); return }
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
      await client.closeConnection(id)
      notice('Closed connection ' + shortId(id) + '.', 'ok')
    } catch (err) {
      if (err instanceof AuthError) { onAuthError(); return }
      if (err.status === 404) notice('Connection ' + shortId(id) + ' was already gone.', 'ok')
      else { notice('Could not close ' + shortId(id) + ': ' + err.message, 'bad'); return }
    }
    if (r !== undefined && r.tr.contains(document.activeElement)) el.tableWrap.focus()
    dropRow(id)
    void refresh()
  }

  let noticeTimer = null
  function notice (text, kind) {
    el.notice.textContent = text
    el.notice.className = 'notice ' + kind
    clearTimeout(noticeTimer)
    noticeTimer = setTimeout(() => { el.notice.textContent = ''; el.notice.className = 'notice' }, 8000)
  }

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
    void refresh()
  }
  const applySoon = () => { clearTimeout(filterTimer); filterTimer = setTimeout(applyFilters, 300) }
  el.fRoute.addEventListener('input', applySoon)
  el.fUser.addEventListener('input', applySoon)
  el.fRoute.addEventListener('change', applyFilters)
  el.fUser.addEventListener('change', applyFilters)
  el.pageSize.addEventListener('change', applyFilters)
  el.filters.addEventListener('submit', (e) => { e.preventDefault(); applyFilters() })
  // Clears the filters only: the page size stays as chosen.
  el.clearFilters.addEventListener('click', () => { el.fRoute.value = ''; el.fUser.value = ''; applyFilters() })

  /** Shows only the connections of one route (a click in "Connections by route"). */
  function filterRoute (route) {
    el.fRoute.value = route
    applyFilters()
  }

  function goTo (offset) {
    const lastPage = Math.max(0, Math.floor((state.total - 1) / state.limit) * state.limit)
    const next = Math.min(Math.max(0, offset), lastPage)
    if (next === state.offset) return
    state.offset = next
    el.tableWrap.scrollTop = 0
    void refresh()
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

  return { renderConnections, renderSortHeaders, renderRouteNames, filterRoute, clear }
}
