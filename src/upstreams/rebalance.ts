/**
 * The plan of a rebalance (POST {admin.prefix}/upstreams/:name/rebalance), as a pure function of
 * the targets and this instance's connections: each target that takes new connections has a
 * fair share of them in proportion to its weight; a target above its share (rounded up) gives
 * up the surplus, taken from connections that are at least `minAgeMs` old and whose route allows
 * it (`rebalance: false` on a route keeps its connections), oldest first. Targets that take no
 * new connections (drained, weight 0, unhealthy, retired) are left as they are: their own
 * mechanism (a drain's closeWithin, closeOnUnhealthy) decides about their connections.
 * The deficits (targets below their share, rounded down) are what the pool steers the
 * reconnecting clients to.
 */

export interface RebalanceTarget {
  id: string
  url: string
  weight: number
  /** Takes new connections now (active, weight > 0, healthy). */
  eligible: boolean
}

export interface RebalanceConnection {
  id: string
  /** The target URL the connection is bridged to. */
  target: string
  /** Epoch ms. */
  connectedAt: number
  /** False on routes with `rebalance: false`. */
  movable: boolean
}

export interface TargetPlan {
  id: string
  url: string
  weight: number
  eligible: boolean
  /** Connections of this instance to the target now. */
  connections: number
  /** Its weighted share of the eligible targets' connections (0 when not eligible). */
  fairShare: number
  /** Connections above the share (rounded up); 0 when not eligible. */
  surplus: number
  /** The connections chosen to close (at most `surplus`: only old enough and movable ones). */
  picked: string[]
}

export interface RebalancePlan {
  /** Connections on eligible targets. */
  total: number
  targets: TargetPlan[]
  /** Target URL -> connections it is below its share (rounded down). */
  deficits: Map<string, number>
  /** Every picked connection id. */
  picked: string[]
}

/** What to close so that each eligible target is at most at its weighted fair share. */
export function planRebalance (targets: readonly RebalanceTarget[], connections: readonly RebalanceConnection[], now: number, minAgeMs: number): RebalancePlan {
  const byTarget = new Map<string, RebalanceConnection[]>()
  for (const c of connections) {
    let list = byTarget.get(c.target)
    if (list === undefined) byTarget.set(c.target, list = [])
    list.push(c)
  }
  const eligible = targets.filter((t) => t.eligible && t.weight > 0)
  const weight = eligible.reduce((n, t) => n + t.weight, 0)
  const total = eligible.reduce((n, t) => n + (byTarget.get(t.url)?.length ?? 0), 0)
  const deficits = new Map<string, number>()
  const picked: string[] = []
  const plans = targets.map((t): TargetPlan => {
    const conns = byTarget.get(t.url) ?? []
    if (!t.eligible || t.weight <= 0 || weight === 0) {
      return { id: t.id, url: t.url, weight: t.weight, eligible: false, connections: conns.length, fairShare: 0, surplus: 0, picked: [] }
    }
    const share = total * t.weight / weight
    const surplus = Math.max(0, conns.length - Math.ceil(share))
    const deficit = Math.floor(share) - conns.length
    if (deficit > 0) deficits.set(t.url, deficit)
    const chosen = conns
      .filter((c) => c.movable && now - c.connectedAt >= minAgeMs)
      .sort((a, b) => a.connectedAt - b.connectedAt)
      .slice(0, surplus)
      .map((c) => c.id)
    picked.push(...chosen)
    return { id: t.id, url: t.url, weight: t.weight, eligible: true, connections: conns.length, fairShare: Math.round(share * 100) / 100, surplus, picked: chosen }
  })
  return { total, targets: plans, deficits, picked }
}
