// The dashboard's upstream targets panel: every target with its weight, state, source, health and
// load, and two actions that call the admin API: Drain / Activate a target
// (PATCH {prefix}/upstreams/:name/targets/:id) and Rebalance an upstream (a dry run first, whose
// result is shown for confirmation, then POST {prefix}/upstreams/:name/rebalance).
// The pure part (what a row shows, the rebalance summary) takes values and returns values, so
// Node can import and test it; only createUpstreamsPanel touches the DOM.
import { nf, timeFmt } from './format.js'

/** The connections a rebalance may close: only those at least this old (the API's default too). */
export const REBALANCE_MIN_AGE_MS = 60000

/**
 * What one target's row shows.
 * @param {{ id: string, url: string, weight: number, state: string, source: string, resolvedFrom: string | null, healthy: boolean, health: string, downUntil: string | null }} t
 */
export function targetView (t) {
  return {
    target: t.url,
    title: t.resolvedFrom === null ? t.id : t.id + ' (resolved from ' + t.resolvedFrom + ')',
    weight: nf.format(t.weight),
    state: t.state,
    stateClass: t.state === 'drain' ? 'warn' : t.weight === 0 ? 'neutral' : 'good',
    source: t.source,
    health: t.health,
    healthClass: t.health === 'healthy' ? 'good' : t.health === 'unchecked' ? (t.healthy ? 'neutral' : 'bad') : 'bad',
    healthNote: t.downUntil ? ' until ' + timeFmt.format(new Date(t.downUntil)) : '',
    // The action the row offers: drain an active target, take a drained one back.
    action: t.state === 'drain' ? { label: 'Activate', body: { state: 'active' } } : { label: 'Drain', body: { state: 'drain' } }
  }
}

/**
 * The text a rebalance's answer is shown with: per target its connections and fair share, and
 * how many would be (or were) closed.
 * @param {{ dryRun: boolean, total: number, minAgeMs: number, targets: Array<{ id: string, connections: number, fairShare: number, eligible: boolean, picked: string[] }> }} answer
 */
export function rebalanceSummary (answer) {
  const picked = answer.targets.reduce((n, t) => n + t.picked.length, 0)
  const lines = answer.targets.map((t) => t.id + ': ' + nf.format(t.connections) + ' open, ' +
    (t.eligible ? 'fair share ' + nf.format(t.fairShare) + (t.picked.length > 0 ? ', ' + nf.format(t.picked.length) + ' to close' : '') : 'left alone (takes no new connections)'))
  const head = picked === 0
    ? 'Nothing to close: every target is within its fair share (of ' + nf.format(answer.total) + ' connections older than ' + Math.round(answer.minAgeMs / 1000) + ' s).'
    : (answer.dryRun ? 'Would close ' : 'Closing ') + nf.format(picked) + ' of ' + nf.format(answer.total) + ' connections (1012, paced), on this instance:'
  return [head, ...lines].join('\n')
}

/**
 * The panel: `render(upstreams)` draws the rows into `tbody` (only when they changed); the
 * actions report through `notify(text, isError)` and ask through `confirm(text)`.
 * @param {{ client: { updateTarget: Function, rebalance: Function }, tbody: HTMLElement, notify: (text: string, isError?: boolean) => void, confirm?: (text: string) => boolean, changed?: () => void }} opts
 */
/**
 * Drain or activate one target; says what happened through `notify`. Returns whether it changed.
 * @param {{ client: { updateTarget: Function }, upstream: string, target: string, body: { state: string }, notify: (text: string, isError?: boolean) => void }} o
 */
export async function changeTarget ({ client, upstream, target, body, notify }) {
  try {
    await client.updateTarget(upstream, target, body)
    notify(target + ' is now ' + body.state + ' (until the next reload or restart).')
    return true
  } catch (err) {
    notify('Could not change ' + target + ': ' + err.message, true)
    return false
  }
}

/**
 * Rebalance with a dry run first: its result is shown for confirmation, and only a confirmed
 * rebalance is asked for (nothing is asked when there is nothing to close). Returns whether a
 * rebalance ran.
 * @param {{ client: { rebalance: Function }, upstream: string, confirm: (text: string) => boolean, notify: (text: string, isError?: boolean) => void }} o
 */
export async function rebalanceWithConfirm ({ client, upstream, confirm, notify }) {
  let dry
  try {
    dry = await client.rebalance(upstream, { dryRun: true, minAgeMs: REBALANCE_MIN_AGE_MS })
  } catch (err) {
    notify('Rebalance dry run of ' + upstream + ' failed: ' + err.message, true)
    return false
  }
  const summary = rebalanceSummary(dry)
  if (dry.targets.every((t) => t.picked.length === 0)) { notify(summary); return false }
  if (!confirm('Rebalance ' + upstream + '?\n\n' + summary)) { notify('Rebalance of ' + upstream + ' cancelled.'); return false }
  try {
    const done = await client.rebalance(upstream, { minAgeMs: REBALANCE_MIN_AGE_MS })
    notify(rebalanceSummary(done))
    return true
  } catch (err) {
    notify('Rebalance of ' + upstream + ' failed: ' + err.message, true)
    return false
  }
}

/**
 * The panel: `render(upstreams)` draws the rows into `tbody` (only when they changed); the
 * actions report through `notify(text, isError)` and ask through `confirm(text)`.
 * @param {{ client: { updateTarget: Function, rebalance: Function }, tbody: HTMLElement, notify: (text: string, isError?: boolean) => void, confirm?: (text: string) => boolean, changed?: () => void }} opts
 */
export function createUpstreamsPanel ({ client, tbody, notify, confirm = (text) => window.confirm(text), changed = () => {} }) {
  let key = ''

  const setState = async (upstream, t, body) => { if (await changeTarget({ client, upstream, target: t.id, body, notify })) changed() }
  const rebalance = async (upstream) => { if (await rebalanceWithConfirm({ client, upstream, confirm, notify })) changed() }

  function button (label, aria, onClick) {
    const b = document.createElement('button')
    b.type = 'button'
    b.className = 'btn small'
    b.textContent = label
    b.setAttribute('aria-label', aria)
    b.addEventListener('click', () => { b.disabled = true; void onClick().finally(() => { b.disabled = false }) })
    return b
  }

  function render (upstreams) {
    const next = JSON.stringify(upstreams)
    if (next === key) return
    key = next
    const rows = []
    for (const u of upstreams) {
      u.targets.forEach((t, i) => {
        const v = targetView(t)
        const tr = document.createElement('tr')
        const cell = (text, cls) => { const td = document.createElement('td'); td.textContent = text; if (cls) td.className = cls; tr.append(td); return td }
        const badge = (text, cls) => { const s = document.createElement('span'); s.className = 'badge ' + cls; s.textContent = text; return s }
        const name = cell(i === 0 ? u.name : '')
        if (i === 0) {
          name.className = 'strong'
          name.append(' ', button('Rebalance…', 'Rebalance upstream ' + u.name, () => rebalance(u.name)))
        }
        cell(v.target, 'upstream').title = v.title
        cell(v.weight, 'num')
        cell('').append(badge(v.state, v.stateClass))
        cell(v.source, 'muted')
        const health = cell('')
        health.append(badge(v.health, v.healthClass))
        if (v.healthNote !== '') health.append(v.healthNote)
        cell(nf.format(t.openConnections), 'num')
        cell(nf.format(t.inFlight), 'num')
        cell(i === 0 ? u.balance : '', 'muted')
        cell(t.lastError ?? '', 'error-text')
        cell('').append(button(v.action.label, v.action.label + ' target ' + t.id + ' of ' + u.name, () => setState(u.name, t, v.action.body)))
        rows.push(tr)
      })
    }
    if (rows.length === 0) {
      const tr = document.createElement('tr')
      const td = document.createElement('td')
      td.colSpan = 11
      td.className = 'muted'
      td.textContent = 'No upstreams configured.'
      tr.append(td)
      rows.push(tr)
    }
    tbody.replaceChildren(...rows)
  }

  return { render, reset () { key = '' } }
}
