/**
 * src/proxy/http-forward.ts: forwardRequest has no pure helpers exported, so it is driven here
 * without any server: a stand-in undici Dispatcher calls the handler (onConnect, onHeaders,
 * onData, onComplete, onError) as undici would, and the answer goes to a real
 * http.ServerResponse whose socket is a stream.Duplex recording the bytes. Covered: the request
 * handed to undici, hop-by-hop and Connection-listed response headers dropped, Via, the
 * gateway's extra headers winning, bodiless answers, trailers (only when the client takes them
 * and the answer is chunked), failures before and after the answer started, the body limit, and
 * a client that leaves.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { Duplex, Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import { forwardRequest, type ForwardOptions } from '../../../src/proxy/http-forward.js'

type Handler = Dispatcher.DispatchHandler

/** A ServerResponse for an HTTP/1.1 `method` request, writing to memory. */
function response (method = 'GET'): { res: ServerResponse, bytes: () => Buffer, text: () => string, socketErrors: Error[] } {
  const out: Buffer[] = []
  const socketErrors: Error[] = []
  const sock = new Duplex({ read () {}, write (c: Buffer, _e, cb) { out.push(c); cb() } })
  // As a server's socket has: res.destroy(err) destroys it with that error.
  sock.on('error', (err) => { socketErrors.push(err) })
  const req = new IncomingMessage(sock as unknown as Socket)
  req.httpVersionMajor = 1
  req.httpVersionMinor = 1
  req.method = method
  const res = new ServerResponse(req)
  res.sendDate = false
  res.assignSocket(sock as unknown as Socket)
  return { res, bytes: () => Buffer.concat(out), text: () => Buffer.concat(out).toString('latin1'), socketErrors }
}

/** The status line and header lines of what was written. */
function head (text: string): string[] {
  return text.split('\r\n\r\n', 1)[0].split('\r\n')
}

/** A Dispatcher whose dispatch() records its arguments and hands the handler to `run`. */
function dispatcher (run: (h: Handler, opts: Dispatcher.DispatchOptions) => void): { agent: Dispatcher, calls: Dispatcher.DispatchOptions[], aborted: Array<Error | undefined> } {
  const calls: Dispatcher.DispatchOptions[] = []
  const aborted: Array<Error | undefined> = []
  const agent = {
    dispatch (opts: Dispatcher.DispatchOptions, h: Handler) {
      calls.push(opts)
      h.onConnect!((err?: Error) => { aborted.push(err) })
      run(h, opts)
      return true
    }
  } as unknown as Dispatcher
  return { agent, calls, aborted }
}

const raw = (...pairs: string[]): Buffer[] => pairs.map((s) => Buffer.from(s, 'latin1'))
const noop = (): void => {}

function options (extra: Partial<ForwardOptions> = {}): ForwardOptions {
  return { origin: 'http://127.0.0.1:9001', path: '/x?q=1', method: 'GET', headers: { host: 'up' }, body: null, timeout: 5000, onFailure: () => assert.fail('no failure expected'), ...extra }
}

/** Runs one exchange: the upstream answers `status` with `headers`, then `chunks`, then `trailers`. */
function exchange (status: number, headers: Buffer[], chunks: string[] = [], trailers: string[] | null = null): (h: Handler) => void {
  return (h) => {
    h.onHeaders!(status, headers, noop, '')
    for (const c of chunks) h.onData!(Buffer.from(c))
    h.onComplete!(trailers)
  }
}

describe('forwardRequest: the request', () => {
  test('is dispatched with the origin, path, method, headers, body and timeouts given', () => {
    const { res } = response()
    const { agent, calls } = dispatcher(exchange(204, []))
    forwardRequest(agent, res, options({ method: 'DELETE', headers: { host: 'up', 'x-a': ['1', '2'] }, timeout: 1234 }))
    assert.equal(calls.length, 1)
    const c = calls[0]
    assert.deepEqual({ origin: c.origin, path: c.path, method: c.method, headers: c.headers, body: c.body, headersTimeout: c.headersTimeout, bodyTimeout: c.bodyTimeout }, {
      origin: 'http://127.0.0.1:9001', path: '/x?q=1', method: 'DELETE', headers: { host: 'up', 'x-a': ['1', '2'] }, body: null, headersTimeout: 1234, bodyTimeout: 1234
    })
  })
})

describe('forwardRequest: the answer', () => {
  test('status, end-to-end headers in order and the body are passed on; Via is added', () => {
    const { res, text } = response()
    const { agent } = dispatcher(exchange(201, raw('Content-Type', 'text/plain', 'X-Multi', 'a', 'X-Multi', 'b', 'Content-Length', '5'), ['hel', 'lo']))
    forwardRequest(agent, res, options())
    // (Node's own Connection/Keep-Alive lines follow.)
    assert.deepEqual(head(text()).slice(0, 6), ['HTTP/1.1 201 Created', 'Content-Type: text/plain', 'X-Multi: a', 'X-Multi: b', 'Content-Length: 5', 'Via: 1.1 tollgate'])
    assert.ok(text().endsWith('\r\n\r\nhello'))
    assert.equal(res.writableEnded, true)
  })

  test('hop-by-hop headers and the names Connection lists are dropped', () => {
    const { res, text } = response()
    const { agent } = dispatcher(exchange(200, raw(
      'Connection', 'close, X-Hop', 'Keep-Alive', 'timeout=1', 'Proxy-Authenticate', 'Basic', 'Upgrade', 'h2c',
      'Transfer-Encoding', 'chunked', 'TE', 'trailers', 'X-Hop', 'secret', 'Connection', 'x-hop2', 'X-Hop2', 's2', 'X-End', 'kept', 'Content-Length', '0'
    )))
    forwardRequest(agent, res, options())
    const lines = head(text()).map((l) => l.toLowerCase())
    for (const name of ['keep-alive: timeout=1', 'proxy-authenticate', 'upgrade', 'transfer-encoding', 'te:', 'x-hop:', 'x-hop2', 'connection: close']) {
      assert.equal(lines.some((l) => l.startsWith(name)), false, name)
    }
    assert.ok(lines.includes('x-end: kept'))
  })

  test('the upstream\'s Via lines are kept, the gateway\'s appended', () => {
    const { res, text } = response()
    const { agent } = dispatcher(exchange(200, raw('Via', '1.0 a', 'Content-Length', '0', 'via', '1.1 b')))
    forwardRequest(agent, res, options())
    assert.deepEqual(head(text()).filter((l) => l.toLowerCase().startsWith('via')), ['Via: 1.0 a, 1.1 b, 1.1 tollgate'])
  })

  test('header values are passed on as latin1 bytes', () => {
    const { res, bytes } = response()
    const { agent } = dispatcher(exchange(200, [Buffer.from('X-L'), Buffer.from([0x63, 0x61, 0x66, 0xe9]), Buffer.from('Content-Length'), Buffer.from('0')]))
    forwardRequest(agent, res, options())
    assert.ok(bytes().includes(Buffer.from([0x58, 0x2d, 0x4c, 0x3a, 0x20, 0x63, 0x61, 0x66, 0xe9, 0x0d, 0x0a])))
  })

  test('the gateway\'s extra headers are added and win over the upstream\'s', () => {
    const { res, text } = response()
    const { agent } = dispatcher(exchange(200, raw('X-RateLimit-Limit', '999', 'X-Up', 'u', 'Content-Length', '0')))
    let asked = 0
    forwardRequest(agent, res, options({ extraHeaders: () => { asked++; return { 'x-ratelimit-limit': 10, 'x-list': ['a', 'b'], 'x-none': undefined } } }))
    assert.equal(asked, 1)
    const lines = head(text())
    assert.deepEqual(lines.filter((l) => /^x-/i.test(l)), ['X-Up: u', 'x-ratelimit-limit: 10', 'x-list: a', 'x-list: b'])
  })

  test('an extra Via replaces the upstream\'s and the gateway\'s', () => {
    const { res, text } = response()
    const { agent } = dispatcher(exchange(200, raw('Via', '1.0 a', 'Content-Length', '0')))
    forwardRequest(agent, res, options({ extraHeaders: () => ({ via: 'custom' }) }))
    assert.deepEqual(head(text()).filter((l) => l.toLowerCase().startsWith('via')), ['via: custom'])
  })

  test('1xx answers are not passed on; the final one is', () => {
    const { res, text } = response()
    const { agent } = dispatcher((h) => {
      assert.equal(h.onHeaders!(100, raw('X-Info', '1'), noop, ''), true)
      h.onHeaders!(200, raw('Content-Length', '2'), noop, '')
      h.onData!(Buffer.from('ok'))
      h.onComplete!(null)
    })
    forwardRequest(agent, res, options())
    assert.equal(head(text())[0], 'HTTP/1.1 200 OK')
    assert.equal(text().includes('X-Info'), false)
    assert.equal((text().match(/HTTP\/1\.1/g) ?? []).length, 1)
  })

  for (const [method, status] of [['HEAD', 200], ['GET', 204], ['GET', 304]] as const) {
    test(`${method} ${status}: the answer ends with its head`, () => {
      const { res, text } = response(method)
      const { agent } = dispatcher((h) => { h.onHeaders!(status, raw('Content-Length', '10'), noop, '') })
      forwardRequest(agent, res, options({ method }))
      assert.equal(res.writableEnded, true)
      assert.ok(text().endsWith('\r\n\r\n'))
    })
  }

  test('a body the client is slow to take pauses the upstream until it drains', () => {
    const { res } = response()
    let resumed = 0
    let full: boolean | undefined
    const { agent } = dispatcher((h) => {
      h.onHeaders!(200, raw('Content-Length', String(1 << 20)), () => { resumed++ }, '')
      full = h.onData!(Buffer.alloc(1 << 20))
    })
    forwardRequest(agent, res, options())
    assert.equal(full, false, 'onData tells undici to pause')
    res.emit('drain')
    assert.equal(resumed, 1)
  })
})

describe('forwardRequest: trailers', () => {
  const chunkedWithTrailers = exchange(200, raw('Trailer', 'X-Sum', 'Content-Type', 'text/plain'), ['body'], ['X-Sum', 'abc', 'Connection', 'close'])

  test('passed on when the client takes them and the answer is chunked', () => {
    const { res, text } = response()
    const { agent } = dispatcher(chunkedWithTrailers)
    forwardRequest(agent, res, options({ acceptTrailers: true }))
    assert.ok(head(text()).includes('Trailer: X-Sum'))
    assert.ok(text().endsWith('0\r\nX-Sum: abc\r\n\r\n'), JSON.stringify(text()))
  })

  test('dropped (with the Trailer header) when the client did not ask for them', () => {
    const { res, text } = response()
    const { agent } = dispatcher(chunkedWithTrailers)
    forwardRequest(agent, res, options())
    assert.equal(text().includes('X-Sum'), false)
    assert.ok(text().endsWith('0\r\n\r\n'))
  })

  test('dropped when the answer has a Content-Length (no chunked body to carry them)', () => {
    const { res, text } = response()
    const { agent } = dispatcher(exchange(200, raw('Trailer', 'X-Sum', 'Content-Length', '4'), ['body'], ['X-Sum', 'abc']))
    forwardRequest(agent, res, options({ acceptTrailers: true }))
    assert.equal(text().includes('X-Sum'), false)
    assert.ok(text().endsWith('\r\n\r\nbody'))
  })
})

describe('forwardRequest: failures', () => {
  test('before the answer started: onFailure gets the error, nothing is written', () => {
    const { res, text } = response()
    const failures: Error[] = []
    const boom = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    const { agent } = dispatcher((h) => { h.onError!(boom); h.onError!(new Error('again')) })
    forwardRequest(agent, res, options({ onFailure: (e) => { failures.push(e) } }))
    assert.deepEqual(failures, [boom])
    assert.equal(text(), '')
    assert.equal(res.headersSent, false)
  })

  test('a synchronous throw from dispatch is a failure too', () => {
    const { res } = response()
    const failures: Error[] = []
    const agent = { dispatch () { throw new TypeError('invalid header') } } as unknown as Dispatcher
    forwardRequest(agent, res, options({ onFailure: (e) => { failures.push(e) } }))
    assert.equal(failures.length, 1)
    assert.equal(failures[0].message, 'invalid header')
  })

  test('after the answer started: the client\'s response is destroyed, onFailure is not called', async () => {
    const { res, socketErrors } = response()
    const reset = new Error('upstream reset')
    const { agent } = dispatcher((h) => {
      h.onHeaders!(200, raw('Content-Length', '100'), noop, '')
      h.onData!(Buffer.from('part'))
      h.onError!(reset)
    })
    forwardRequest(agent, res, options())
    assert.equal(res.destroyed, true)
    await new Promise((resolve) => setImmediate(resolve))
    assert.deepEqual(socketErrors, [reset])
  })

  test('after a complete bodiless answer, an error changes nothing', () => {
    const { res, text } = response('HEAD')
    const { agent } = dispatcher((h) => {
      h.onHeaders!(200, raw('Content-Length', '3'), noop, '')
      h.onError!(new Error('framing'))
    })
    forwardRequest(agent, res, options({ method: 'HEAD' }))
    assert.equal(res.destroyed, false)
    assert.equal(head(text())[0], 'HTTP/1.1 200 OK')
  })

  test('a client that leaves before the answer is complete aborts the upstream request', () => {
    const { res } = response()
    const d = dispatcher((h) => { h.onHeaders!(200, raw('Content-Length', '100'), noop, '') })
    forwardRequest(d.agent, res, options())
    assert.equal(d.aborted.length, 0)
    res.emit('close')
    assert.equal(d.aborted.length, 1)
  })

  test('a client that leaves after its whole answer aborts nothing', async () => {
    const { res } = response()
    const d = dispatcher(exchange(200, raw('Content-Length', '2'), ['ok']))
    forwardRequest(d.agent, res, options())
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(res.writableFinished, true)
    res.emit('close')
    assert.equal(d.aborted.length, 0)
  })

  test('a response already destroyed when undici connects: aborted at once', () => {
    const { res } = response()
    res.destroy()
    const d = dispatcher(noop)
    forwardRequest(d.agent, res, options({ onFailure: noop }))
    assert.equal(d.aborted.length, 1)
  })
})

describe('forwardRequest: maxBodySize', () => {
  /** A dispatcher that reads the body it is given and fails the request if that stream errors. */
  function reading (onBody: (bytes: number) => void): Dispatcher {
    return {
      dispatch (opts: Dispatcher.DispatchOptions, h: Handler) {
        h.onConnect!(noop)
        const body = opts.body as Readable
        let n = 0
        body.on('data', (c: Buffer) => { n += c.length })
        body.on('error', (err) => { h.onError!(err) })
        body.on('end', () => { onBody(n); exchange(200, raw('Content-Length', '0'))(h) })
        return true
      }
    } as unknown as Dispatcher
  }
  const bodyOf = (...chunks: string[]): IncomingMessage => Readable.from(chunks.map((c) => Buffer.from(c))) as unknown as IncomingMessage

  test('a body within the limit is forwarded whole', async () => {
    const { res } = response('POST')
    const got = new Promise<number>((resolve) => {
      forwardRequest(reading(resolve), res, options({ method: 'POST', body: bodyOf('12345', '67890'), maxBodySize: 10 }))
    })
    assert.equal(await got, 10)
  })

  test('past the limit: GW_ERR_BODY_TOO_LARGE, the chunk past it is not sent', async () => {
    const { res } = response('POST')
    const failed = new Promise<Error & { code?: string }>((resolve) => {
      forwardRequest(reading(() => assert.fail('the body must not end normally')), res, options({ method: 'POST', body: bodyOf('12345', '67890', 'x'), maxBodySize: 10, onFailure: resolve }))
    })
    const err = await failed
    assert.equal(err.code, 'GW_ERR_BODY_TOO_LARGE')
    assert.equal((err as { statusCode?: number }).statusCode, 413)
  })

  test('no limit (null): the body is handed over as is', () => {
    const { res } = response('POST')
    const body = bodyOf('a')
    const { agent, calls } = dispatcher(exchange(200, raw('Content-Length', '0')))
    forwardRequest(agent, res, options({ method: 'POST', body, maxBodySize: null }))
    assert.equal(calls[0].body, body)
  })
})
