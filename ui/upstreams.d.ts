// The types of upstreams.js, for TypeScript code that imports it (test/unit/ui/upstreams.test.ts):
// the tsconfig does not check JavaScript (no allowJs). Not served. Keep in step with the JSDoc of
// upstreams.js.

export interface TargetJson {
  id: string
  url: string
  weight: number
  state: string
  source: string
  resolvedFrom: string | null
  healthy: boolean
  health: string
  downUntil: string | null
  openConnections?: number
  inFlight?: number
  lastError?: string | null
}

export interface RebalanceJson {
  dryRun: boolean
  total: number
  minAgeMs: number
  targets: Array<{ id: string, connections: number, fairShare: number, eligible: boolean, picked: string[] }>
}

export type Notify = (text: string, isError?: boolean) => void

export const REBALANCE_MIN_AGE_MS: number

export function targetView (t: TargetJson): {
  target: string
  title: string
  weight: string
  state: string
  stateClass: string
  source: string
  health: string
  healthClass: string
  healthNote: string
  action: { label: string, body: { state: string } }
}

export function rebalanceSummary (answer: RebalanceJson): string

export function changeTarget (o: { client: { updateTarget: (upstream: string, target: string, body: { state: string }) => Promise<unknown> }, upstream: string, target: string, body: { state: string }, notify: Notify }): Promise<boolean>

export function rebalanceWithConfirm (o: { client: { rebalance: (upstream: string, body: { dryRun?: boolean, minAgeMs?: number }) => Promise<RebalanceJson> }, upstream: string, confirm: (text: string) => boolean, notify: Notify }): Promise<boolean>

export function createUpstreamsPanel (opts: unknown): { render (upstreams: unknown[]): void, reset (): void }
