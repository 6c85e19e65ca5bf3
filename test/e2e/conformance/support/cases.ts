/**
 * The two directions of a "bad framing" case: a misbehaving client against a correct upstream,
 * and a misbehaving upstream against a correct client. Expected either way: the misbehaving peer
 * gets a close frame (1002 unless said otherwise) and its TCP connection ends within 1 s, the
 * correct peer is closed too, and the correct peer received only what came before the bad frame.
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { assertClosedWith, assertFailedConnection, type Lab } from './lab.js'
import { OP, frame } from './frames.js'

export interface BadCase {
  /** The frames the misbehaving peer sends; `masked` is what its role requires (client: true). */
  send: (masked: boolean) => Buffer[]
  /** Text messages the correct peer must receive before the failure (valid ones sent first). */
  relayedFirst?: string[]
  /** Send all the bytes in pieces of this size (Autobahn's "octets sent in chops"). */
  chop?: number
  /** Close code the misbehaving peer gets (default 1002). */
  code?: number
  /** Close code(s) the correct peer is closed with (default: the same as `code`). */
  otherCode?: number | number[]
}

/** A ping with a payload, sent after a bad frame: the correct peer must never see it. */
export const trailingPing = (masked: boolean): Buffer => frame({ opcode: OP.PING, payload: 'after the bad frame', mask: masked })

async function write (peer: { send: (...b: Buffer[]) => void, sendInChops: (b: Buffer, n: number) => Promise<void> }, bytes: Buffer[], chop?: number): Promise<void> {
  if (chop === undefined) { peer.send(...bytes); return }
  // The peer may be cut off half-way: what matters is what it got back.
  await peer.sendInChops(Buffer.concat(bytes), chop).catch(() => {})
}

export async function badFromClient (t: TestContext, lab: Lab, c: BadCase): Promise<void> {
  const { client, server } = await lab.rawToGood(t)
  await write(client, c.send(true), c.chop)
  const failed = await assertFailedConnection(client, c.code ?? 1002)
  assert.equal(failed.frame.masked, false, 'the close frame to the client is unmasked')
  await assertClosedWith(server, c.otherCode ?? c.code ?? 1002, 'the upstream')
  assert.deepEqual(server.messages.map((m) => m.data.toString()), c.relayedFirst ?? [], 'messages the upstream received')
  assert.deepEqual(server.pings.map(String), [], 'pings the upstream received')
  await failed.tcpEnded()
}

export async function badFromUpstream (t: TestContext, lab: Lab, c: BadCase): Promise<void> {
  const { client, up } = await lab.goodToRaw(t)
  await write(up.peer, c.send(false), c.chop)
  const failed = await assertFailedConnection(up.peer, c.code ?? 1002)
  assert.equal(failed.frame.masked, true, 'the close frame to the upstream is masked')
  await assertClosedWith(client, c.otherCode ?? c.code ?? 1002, 'the client')
  assert.deepEqual(client.messages.map((m) => m.data.toString()), c.relayedFirst ?? [], 'messages the client received')
  assert.deepEqual(client.pings.map(String), [], 'pings the client received')
  await failed.tcpEnded()
}

/** Registers the two tests of a case: `${id} ${group}: ${what} from the client|upstream: ...`. */
export function badBothWays (lab: () => Lab, id: string, what: string, c: BadCase): void {
  const code = c.code ?? 1002
  test(`${id}: ${what}, from the client: the client gets ${code} and its TCP ends within 1 s, the upstream is closed and never gets it`, { timeout: 10_000 }, (t) => badFromClient(t, lab(), c))
  test(`${id}: ${what}, from the upstream: the upstream gets ${code} and its TCP ends within 1 s, the client is closed and never gets it`, { timeout: 10_000 }, (t) => badFromUpstream(t, lab(), c))
}
