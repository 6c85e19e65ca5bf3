/**
 * Types shared by the modules of the composition root. They live here, not in the module that
 * produces them (runtime.ts), so that app.ts and plugin.ts can name them without importing the
 * runtime, which imports them: no cycle, not even a type-only one.
 */

/** What a reload did. */
export interface ReloadResult {
  ok: boolean
  /** Top-level sections or routes that changed (`routes[/chat]`, `upstreams.chat`, `websocket`...). */
  changed: string[]
  /** Settings that only a restart applies; they keep their old values. */
  restartRequired: string[]
  error?: string
}
