/**
 * WebSocket close codes the gateway sends, and the mapping of codes that can never be sent on
 * the wire (1005, 1006, 1015: ws's isValidStatusCode refuses them) when a close is relayed.
 */

export const CLOSE_NORMAL = 1000
export const CLOSE_GOING_AWAY = 1001
/** A peer broke the framing rules (RFC 6455 7.4.1). */
export const CLOSE_PROTOCOL_ERROR = 1002
export const CLOSE_NO_STATUS = 1005
export const CLOSE_ABNORMAL = 1006
/** A message's data was invalid for its type: bad UTF-8 in a close reason, bad compressed data. */
export const CLOSE_INVALID_DATA = 1007
export const CLOSE_POLICY = 1008
export const CLOSE_TOO_BIG = 1009
export const CLOSE_INTERNAL = 1011
export const CLOSE_SERVICE_RESTART = 1012
export const CLOSE_BAD_GATEWAY = 1014
export const CLOSE_TLS = 1015

export const REASON_UPSTREAM_LOST = 'upstream connection lost'
export const REASON_CLIENT_LOST = 'client connection lost'
export const REASON_GOING_AWAY = 'going away'
export const REASON_IDLE = 'idle timeout'
export const REASON_ADMIN = 'closed by administrator'
export const REASON_UPSTREAM_DEAD = 'upstream not responding'
export const REASON_CLIENT_DEAD = 'client not responding'
export const REASON_TOKEN_EXPIRED = 'token expired'
export const REASON_RATE = 'message rate exceeded'
export const REASON_SERVICE_RESTART = 'service restart'
export const REASON_UPSTREAM_UNHEALTHY = 'upstream unhealthy'
export const REASON_TARGET_DRAINED = 'upstream target drained'
export const REASON_TARGET_REMOVED = 'upstream target removed'
export const REASON_REBALANCE = 'rebalancing upstream'
export const REASON_DECLARED_LOST = 'instance declared lost'

/** Same rule as ws/lib/validation.js isValidStatusCode: the codes a close frame may carry. */
export function isSendableCode (code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999)
}

/** Codes an operator may choose when closing a connection through the admin API. */
export function isAdminCloseCode (code: number): boolean {
  return code === 1000 || (code >= 3000 && code <= 4999)
}

/** What to send on one side when the other side's close (code, reason) is relayed. `code` undefined: a close frame with no status (the peer then sees 1005). */
export interface RelayedClose { code: number | undefined, reason: string }

/**
 * Maps a close seen on one side to the close sent to the other side.
 * @param from the side that closed
 */
export function relayClose (from: 'client' | 'upstream', code: number, reason: string): RelayedClose {
  if (code === CLOSE_NO_STATUS) return { code: undefined, reason: '' }
  if (code === CLOSE_ABNORMAL || code === CLOSE_TLS || !isSendableCode(code)) {
    return from === 'upstream'
      ? { code: CLOSE_BAD_GATEWAY, reason: REASON_UPSTREAM_LOST }
      : { code: CLOSE_GOING_AWAY, reason: REASON_CLIENT_LOST }
  }
  return { code, reason }
}
