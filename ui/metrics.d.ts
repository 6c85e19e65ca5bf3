// The types of metrics.js, for TypeScript code that imports it (test/unit/ui/metrics.test.ts):
// the tsconfig does not check JavaScript (no allowJs). Not served: the gateway serves only the .js
// and .css files of ui/. Keep in step with the JSDoc of metrics.js.

export interface Sample {
  labels: Record<string, string>
  value: number
}

/** A counter's value and when it was read (performance.now() milliseconds). */
export interface CounterReading {
  value: number
  at: number
}

export interface DashboardMetrics {
  /** The sum of tollgate_websocket_messages_total over every route and direction. */
  messages: number
  /** Open connections by route, from tollgate_websocket_connections_active (zeros left out). */
  byRoute: Map<string, number>
  /** The routes of byRoute and every route of tollgate_websocket_handshakes_total. */
  routeNames: Set<string>
}

export function unescapeLabel (s: string): string
export function samples (text: string, name: string): Sample[]
export function counterRate (prev: CounterReading | null, value: number, at: number): number | null
export function dashboardMetrics (text: string): DashboardMetrics
