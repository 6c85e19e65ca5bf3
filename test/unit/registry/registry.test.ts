/**
 * src/registry/registry.ts: MemoryRegistry with stand-in bridges (only what the registry reads:
 * info.id/route/userId, toJSON, closed, close, trySend, send): add/remove/get/values, list and
 * search (route and user filters, offset/limit paging, total, connection order), find,
 * closeById (close-code check), sendById (busy client), broadcast; and pageOf, the sort and
 * paging used for cluster-wide listings.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { FakeBridge } from '../../helpers/fake-bridge.js'
import { MemoryRegistry, pageOf } from '../../../src/registry/registry.js'


/** A registry holding, in this order: c1 /chat alice, c2 /chat bob, c3 /feed alice, c4 /chat alice, c5 /feed (anonymous). */
function filled (): { reg: MemoryRegistry, b: FakeBridge[] } {
  const b = [
    new FakeBridge('c1', '/chat', 'alice'),
    new FakeBridge('c2', '/chat', 'bob'),
    new FakeBridge('c3', '/feed', 'alice'),
    new FakeBridge('c4', '/chat', 'alice'),
    new FakeBridge('c5', '/feed', null)
  ]
  const reg = new MemoryRegistry()
  for (const x of b) reg.add(x.bridge)
  return { reg, b }
}
const ids = (page: { connections: Array<Record<string, unknown>> }): unknown[] => page.connections.map((c) => c.id)

describe('MemoryRegistry: add, remove, get', () => {
  test('add, get, size and values', () => {
    const { reg, b } = filled()
    assert.equal(reg.size, 5)
    assert.equal(reg.get('c3'), b[2].bridge)
    assert.equal(reg.get('nope'), undefined)
    assert.deepEqual([...reg.values()].map((x) => x.info.id), ['c1', 'c2', 'c3', 'c4', 'c5'])
  })

  test('remove takes out only that bridge', () => {
    const { reg } = filled()
    reg.remove(reg.get('c2')!)
    assert.equal(reg.size, 4)
    assert.equal(reg.get('c2'), undefined)
    assert.deepEqual([...reg.values()].map((x) => x.info.id), ['c1', 'c3', 'c4', 'c5'])
  })

  test('removing a bridge that is not the registered one for its id changes nothing', () => {
    const { reg, b } = filled()
    reg.remove(new FakeBridge('c1', '/chat', 'alice').bridge)
    assert.equal(reg.get('c1'), b[0].bridge)
    assert.equal(reg.size, 5)
    reg.remove(new FakeBridge('zz', '/x', null).bridge)
    assert.equal(reg.size, 5)
  })

  test('removing twice is harmless', () => {
    const { reg, b } = filled()
    reg.remove(b[0].bridge)
    reg.remove(b[0].bridge)
    assert.equal(reg.size, 4)
  })
})

describe('MemoryRegistry: list and search', () => {
  test('everything, in connection order, with the total', () => {
    const { reg } = filled()
    const page = reg.list()
    assert.equal(page.total, 5)
    assert.deepEqual(ids(page), ['c1', 'c2', 'c3', 'c4', 'c5'])
    assert.deepEqual(page.connections[1], { id: 'c2', route: '/chat', userId: 'bob' })
    assert.equal(page.partial, undefined)
  })

  test('filter by route, by user, by both', () => {
    const { reg } = filled()
    assert.deepEqual(reg.list({ route: '/chat' }), { total: 3, connections: [{ id: 'c1', route: '/chat', userId: 'alice' }, { id: 'c2', route: '/chat', userId: 'bob' }, { id: 'c4', route: '/chat', userId: 'alice' }] })
    assert.deepEqual(ids(reg.list({ user: 'alice' })), ['c1', 'c3', 'c4'])
    assert.deepEqual(ids(reg.list({ route: '/chat', user: 'alice' })), ['c1', 'c4'])
    assert.deepEqual(reg.list({ route: '/none' }), { total: 0, connections: [] })
    assert.deepEqual(reg.list({ user: 'carol' }), { total: 0, connections: [] })
  })

  test('route and user match exactly (no prefix match, no case folding)', () => {
    const { reg } = filled()
    assert.equal(reg.list({ route: '/ch' }).total, 0)
    assert.equal(reg.list({ route: '/CHAT' }).total, 0)
    assert.equal(reg.list({ user: 'Alice' }).total, 0)
  })

  test('paging: offset and limit; total counts every match', () => {
    const { reg } = filled()
    assert.deepEqual(reg.list({ limit: 2 }), { total: 5, connections: reg.list().connections.slice(0, 2) })
    assert.deepEqual(ids(reg.list({ offset: 2, limit: 2 })), ['c3', 'c4'])
    assert.deepEqual(ids(reg.list({ offset: 4, limit: 2 })), ['c5'])
    assert.deepEqual(reg.list({ offset: 5 }), { total: 5, connections: [] })
    assert.deepEqual(reg.list({ offset: 50, limit: 10 }), { total: 5, connections: [] })
    assert.deepEqual(reg.list({ limit: 0 }), { total: 5, connections: [] })
    const alice = reg.list({ user: 'alice', offset: 1, limit: 1 })
    assert.deepEqual(alice, { total: 3, connections: [{ id: 'c3', route: '/feed', userId: 'alice' }] })
  })

  test('the pages of a listing are disjoint and together are the whole listing', () => {
    const { reg } = filled()
    const all: unknown[] = []
    for (let offset = 0; offset < 5; offset += 2) all.push(...ids(reg.list({ offset, limit: 2 })))
    assert.deepEqual(all, ids(reg.list()))
  })

  test('the default limit is 100', () => {
    const reg = new MemoryRegistry()
    for (let i = 0; i < 150; i++) reg.add(new FakeBridge(`id${String(i).padStart(3, '0')}`, '/r', null).bridge)
    const page = reg.list()
    assert.equal(page.total, 150)
    assert.equal(page.connections.length, 100)
    assert.equal(page.connections[99].id, 'id099')
    assert.equal(reg.list({ offset: 100 }).connections[0].id, 'id100')
  })

  test('order is stable: connection order, whatever the ids; a removed connection leaves no gap', () => {
    const reg = new MemoryRegistry()
    for (const id of ['z', 'a', 'm']) reg.add(new FakeBridge(id, '/r', null).bridge)
    assert.deepEqual(ids(reg.list()), ['z', 'a', 'm'])
    reg.remove(reg.get('a')!)
    reg.add(new FakeBridge('b', '/r', null).bridge)
    assert.deepEqual(ids(reg.list()), ['z', 'm', 'b'])
    assert.deepEqual(ids(reg.list()), ['z', 'm', 'b'])
  })

  test('search answers as list', async () => {
    const { reg } = filled()
    assert.deepEqual(await reg.search({ route: '/feed', limit: 1 }), reg.list({ route: '/feed', limit: 1 }))
    assert.deepEqual(await reg.search(), reg.list())
  })

  test('find: the connection\'s view, or null', async () => {
    const { reg } = filled()
    assert.deepEqual(await reg.find('c2'), { id: 'c2', route: '/chat', userId: 'bob' })
    assert.equal(await reg.find('nope'), null)
  })
})

describe('MemoryRegistry: closeById, sendById, broadcast', () => {
  test('closeById closes with the code and reason', async () => {
    const { reg, b } = filled()
    assert.equal(await reg.closeById('c2', 4001, 'kicked'), true)
    assert.deepEqual(b[1].closes, [[4001, 'kicked']])
    assert.deepEqual(b[0].closes, [])
  })

  test('closeById: unknown or already closing connections give false', async () => {
    const { reg, b } = filled()
    assert.equal(await reg.closeById('nope', 1000, ''), false)
    b[0].closed = true
    assert.equal(await reg.closeById('c1', 1000, ''), false)
    assert.deepEqual(b[0].closes, [])
  })

  test('closeById refuses a code no close frame may carry, even for an unknown id', async () => {
    const { reg, b } = filled()
    for (const code of [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 4000.5, Number.NaN]) {
      await assert.rejects(reg.closeById('c1', code, ''), { code: 'GW_ERR_BAD_CLOSE_CODE', statusCode: 400 }, String(code))
      await assert.rejects(reg.closeById('nope', code, ''), { code: 'GW_ERR_BAD_CLOSE_CODE' }, String(code))
    }
    assert.deepEqual(b[0].closes, [])
    for (const code of [1000, 1001, 1008, 1011, 3000, 4999]) {
      b[0].closed = false
      assert.equal(await reg.closeById('c1', code, 'ok'), true, String(code))
    }
    assert.deepEqual(b[0].closes.map((c) => c[0]), [1000, 1001, 1008, 1011, 3000, 4999])
  })

  test('sendById: true when sent, false when unknown or closed, GW_ERR_CLIENT_BUSY when busy', async () => {
    const { reg, b } = filled()
    assert.equal(await reg.sendById('c1', 'hi', false), true)
    assert.deepEqual(b[0].sent, [['hi', false]])
    const bin = Buffer.from([1, 2])
    assert.equal(await reg.sendById('c1', bin, true), true)
    assert.equal(b[0].sent[1][0], bin)
    assert.equal(await reg.sendById('nope', 'hi', false), false)
    b[1].sendResult = 'closed'
    assert.equal(await reg.sendById('c2', 'hi', false), false)
    b[2].sendResult = 'busy'
    await assert.rejects(reg.sendById('c3', 'hi', false), { code: 'GW_ERR_CLIENT_BUSY', statusCode: 503 })
  })

  test('broadcast: to every match of route and/or user; returns how many got it', async () => {
    const { reg, b } = filled()
    assert.equal(await reg.broadcast({}, 'all', false), 5)
    assert.equal(await reg.broadcast({ route: '/chat' }, 'chat', false), 3)
    assert.equal(await reg.broadcast({ user: 'alice' }, 'alice', false), 3)
    assert.equal(await reg.broadcast({ route: '/feed', user: 'alice' }, 'x', true), 1)
    assert.deepEqual(b[2].sent.map((s) => s[0]), ['all', 'alice', 'x'])
    assert.deepEqual(b[1].sent.map((s) => s[0]), ['all', 'chat'])
    assert.deepEqual(b[4].sent.map((s) => s[0]), ['all'])
    assert.equal(await reg.broadcast({ route: '/none' }, 'x', false), 0)
  })

  test('broadcast does not count connections that did not take the message', async () => {
    const { reg, b } = filled()
    b[0].sendResult = 'busy'
    b[3].sendResult = 'closed'
    assert.equal(await reg.broadcast({ route: '/chat' }, 'm', false), 1)
  })
})

describe('pageOf', () => {
  const views = [
    { id: 'b', route: '/chat', userId: 'u1', connectedAt: '2024-01-01T00:00:02.000Z' },
    { id: 'a', route: '/feed', userId: 'u2', connectedAt: '2024-01-01T00:00:03.000Z' },
    { id: 'c', route: '/chat', userId: 'u1', connectedAt: '2024-01-01T00:00:01.000Z' },
    { id: 'a2', route: '/chat', userId: 'u2', connectedAt: '2024-01-01T00:00:02.000Z' }
  ]

  test('sorted by connectedAt, then id', () => {
    assert.deepEqual(ids(pageOf([...views])), ['c', 'a2', 'b', 'a'])
    assert.equal(pageOf([...views]).total, 4)
  })

  test('filters and pages like list', () => {
    assert.deepEqual(pageOf([...views], { route: '/chat' }), { total: 3, connections: [views[2], views[3], views[0]] })
    assert.deepEqual(ids(pageOf([...views], { user: 'u2' })), ['a2', 'a'])
    assert.deepEqual(pageOf([...views], { route: '/chat', offset: 1, limit: 1 }), { total: 3, connections: [views[3]] })
    assert.deepEqual(pageOf([...views], { offset: 9 }), { total: 4, connections: [] })
  })
})

describe('MemoryRegistry: indexes, counts and totals', () => {
  test('route and user together; counts per filter; totals per route', async () => {
    const { reg, b } = filled()
    assert.deepEqual(ids(reg.list({ route: '/chat', user: 'alice' })), ['c1', 'c4'])
    assert.equal(reg.list({ route: '/chat', user: 'alice', offset: 1 }).total, 2)
    assert.deepEqual(ids(reg.list({ route: '/chat', user: 'alice', offset: 1 })), ['c4'])
    assert.deepEqual(reg.list({ route: '/none', user: 'alice' }), { total: 0, connections: [] })
    assert.equal(reg.count(), 5)
    assert.equal(reg.count({ route: '/chat' }), 3)
    assert.equal(reg.count({ user: 'alice' }), 3)
    assert.equal(reg.count({ user: 'alice', route: '/feed' }), 1)
    assert.equal(reg.count({ user: 'nobody' }), 0)
    assert.deepEqual(await reg.totals(), { total: 5, routes: { '/chat': 3, '/feed': 2 }, instances: [{ instanceId: 'local', connections: 5 }] })
    reg.remove(b[2].bridge)
    reg.remove(b[4].bridge)
    assert.deepEqual((await reg.totals()).routes, { '/chat': 3 }, 'a route with no connection left is gone')
    assert.deepEqual(ids(reg.list({ user: 'alice' })), ['c1', 'c4'])
  })

  test('a bridge added again under the same id replaces the old one in every index', () => {
    const reg = new MemoryRegistry('inst-a')
    const old = new FakeBridge('c1', '/chat', 'alice')
    const again = new FakeBridge('c1', '/feed', 'bob')
    reg.add(old.bridge)
    reg.add(again.bridge)
    assert.equal(reg.size, 1)
    assert.equal(reg.count({ route: '/chat' }), 0)
    assert.equal(reg.count({ user: 'bob' }), 1)
    reg.remove(old.bridge) // not the registered one: nothing happens
    assert.equal(reg.get('c1'), again.bridge)
  })

  test('a page deep in thousands of connections is the right slice, after removals too', () => {
    const reg = new MemoryRegistry()
    const all = Array.from({ length: 5000 }, (_, i) => new FakeBridge(`c${i}`, i % 2 === 0 ? '/chat' : '/feed', `u${i % 10}`))
    for (const x of all) reg.add(x.bridge)
    for (let i = 0; i < 5000; i += 3) reg.remove(all[i].bridge)
    const left = all.filter((_, i) => i % 3 !== 0)
    assert.deepEqual(ids(reg.list({ offset: 2000, limit: 5 })), left.slice(2000, 2005).map((x) => x.info.id))
    const chat = left.filter((x) => x.info.route === '/chat')
    assert.deepEqual(reg.list({ route: '/chat', offset: 1000, limit: 3 }), { total: chat.length, connections: chat.slice(1000, 1003).map((x) => x.toJSON()) })
  })

  test('broadcast walks only the index of its filter, and a send that ends a connection does not disturb it', async () => {
    const { reg, b } = filled()
    b[0].send = (): boolean => { reg.remove(b[0].bridge); return true }
    assert.equal(await reg.broadcast({ user: 'alice' }, 'x', false), 3)
    assert.equal(b[1].sent.length, 0, 'bob is not walked')
    assert.equal(await reg.broadcast({ user: 'nobody' }, 'x', false), 0)
  })
})
