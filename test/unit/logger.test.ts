/**
 * src/logger.ts: redactUrl (the token query parameter and token-like ones masked, every other
 * byte of the URL untouched) and loggerOptions (credential headers redacted, the request
 * serializer's URL masked), checked through a real pino logger writing to memory.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { pino, type LoggerOptions } from 'pino'
import type { FastifyRequest } from 'fastify'
import { accessFields, closedFields, createLogger, loggerOptions, millisText, REDACT_PATHS, redactUrl, requestChild, requestFields, toMicros, writeInfoLine } from '../../src/logger.js'

/**
 * The generic form of writeInfoLine's fields (`,"a":1,"b":"x"`): what pino writes for an object
 * no serializer applies to. The reference the direct templates are held to; it is itself
 * checked against pino below.
 */
function jsonFields (fields: Record<string, unknown>): string {
  let out = ''
  for (const key of Object.keys(fields)) {
    const value = fields[key]
    if (value !== undefined) out += `,"${key}":${JSON.stringify(value)}`
  }
  return out
}

describe('redactUrl', () => {
  test('no query: the URL as is', () => {
    assert.equal(redactUrl('/ws/chat', 'access_token'), '/ws/chat')
    assert.equal(redactUrl('/', 'access_token'), '/')
  })

  test('masks the configured parameter, keeps every other parameter and the path', () => {
    assert.equal(redactUrl('/ws?room=1&tk=secret&x=a+b%2F', 'tk'), '/ws?room=1&tk=[REDACTED]&x=a+b%2F')
  })

  test('masks every occurrence of a repeated parameter', () => {
    assert.equal(redactUrl('/p?tk=1&a=2&tk=3', 'tk'), '/p?tk=[REDACTED]&a=2&tk=[REDACTED]')
  })

  test('token-like names are masked whatever the configured one: access_token, token, id_token, jwt', () => {
    assert.equal(redactUrl('/p?access_token=a&token=b&id_token=c&jwt=d&keep=e', 'tk'),
      '/p?access_token=[REDACTED]&token=[REDACTED]&id_token=[REDACTED]&jwt=[REDACTED]&keep=e')
  })

  test('names compare case-insensitively, and the name bytes are kept', () => {
    assert.equal(redactUrl('/p?TK=1&Access_Token=2', 'tk'), '/p?TK=[REDACTED]&Access_Token=[REDACTED]')
    assert.equal(redactUrl('/p?tk=1', 'TK'), '/p?tk=[REDACTED]')
  })

  test('a percent-encoded name is decoded before comparing; its original spelling stays', () => {
    assert.equal(redactUrl('/p?%74k=1&access%5Ftoken=2', 'tk'), '/p?%74k=[REDACTED]&access%5Ftoken=[REDACTED]')
  })

  test('a malformed escape in a name does not throw and is compared as is', () => {
    assert.equal(redactUrl('/p?%zz=1&tk=2', 'tk'), '/p?%zz=1&tk=[REDACTED]')
  })

  test('names that merely contain a token name are not masked', () => {
    assert.equal(redactUrl('/p?tk2=1&mytk=2&tokens=3&jwt_kind=4', 'tk'), '/p?tk2=1&mytk=2&tokens=3&jwt_kind=4')
  })

  test('a token parameter without "=" has no value to mask and stays; an empty value is masked', () => {
    assert.equal(redactUrl('/p?tk&a=1', 'tk'), '/p?tk&a=1')
    assert.equal(redactUrl('/p?tk=', 'tk'), '/p?tk=[REDACTED]')
  })

  test('a value holding "=" is masked whole; empty pairs are kept', () => {
    assert.equal(redactUrl('/p?tk=a=b==&&x=', 'tk'), '/p?tk=[REDACTED]&&x=')
  })
})

/** A pino logger with the gateway's options, and the lines it wrote. */
function capture (tokenParam = 'tk'): { log: pino.Logger, lines: () => Array<Record<string, unknown>> } {
  const out: string[] = []
  const dest = new Writable({ write (chunk, _enc, cb) { out.push(String(chunk)); cb() } })
  const log = pino(loggerOptions('info', tokenParam) as LoggerOptions, dest)
  return { log, lines: () => out.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) }
}

describe('loggerOptions', () => {
  test('level, redaction paths and censor', () => {
    const o = loggerOptions('debug', 'tk') as LoggerOptions
    assert.equal(o.level, 'debug')
    assert.deepEqual(o.redact, { paths: REDACT_PATHS, censor: '[REDACTED]' })
    for (const h of ['authorization', 'cookie', 'sec-websocket-protocol', 'proxy-authorization', 'set-cookie']) {
      assert.ok(REDACT_PATHS.some((p) => p === `headers.${h}` || p === `headers["${h}"]`), h)
    }
  })

  test('credential headers in a logged `headers` object are redacted; others are kept', () => {
    const { log, lines } = capture()
    log.info({
      headers: {
        authorization: 'Bearer s1', cookie: 'tk=s2', 'sec-websocket-protocol': 'bearer.s3',
        'proxy-authorization': 'Basic s4', 'set-cookie': ['a=s5'], 'user-agent': 'ua/1'
      }
    }, 'hello')
    const [line] = lines()
    assert.deepEqual(line.headers, {
      authorization: '[REDACTED]', cookie: '[REDACTED]', 'sec-websocket-protocol': '[REDACTED]',
      'proxy-authorization': '[REDACTED]', 'set-cookie': '[REDACTED]', 'user-agent': 'ua/1'
    })
    assert.equal(JSON.stringify(line).includes('s1'), false)
  })

  test('the req serializer logs method, masked URL and client address, and no headers', () => {
    const { log, lines } = capture('tk')
    const req = {
      method: 'GET',
      url: '/ws?tk=secret&room=1',
      ip: '198.51.100.7',
      socket: { remotePort: 40000 },
      headers: { authorization: 'Bearer secret' }
    } as unknown as FastifyRequest
    log.info({ req }, 'request')
    const [line] = lines()
    assert.deepEqual(line.req, { method: 'GET', url: '/ws?tk=[REDACTED]&room=1', remoteAddress: '198.51.100.7', remotePort: 40000 })
    assert.equal(JSON.stringify(line).includes('secret'), false)
  })
})

describe('writeInfoLine', () => {
  /** A logger createLogger made, writing into `out`, and a child with a request id as Fastify makes one. */
  function capture (level = 'info'): { out: string[], log: ReturnType<typeof createLogger> } {
    const out: string[] = []
    const stream = new Writable({ write (chunk: Buffer, _enc, cb) { out.push(chunk.toString()); cb() } })
    return { out, log: createLogger(level, 'tk', { write: (s: string) => { stream.write(s) } }) }
  }

  test('writes the bytes pino writes for the same fields, bindings first and msg last', () => {
    const { out, log } = capture()
    const child = log.child({ reqId: 'r-1"\\' })
    const req = { method: 'GET', url: '/a?tk=secret&q="x"\\é\u2028', ip: '::1', socket: { remotePort: 4321 } } as unknown as FastifyRequest
    const fields = { req, res: { statusCode: 200 }, responseTime: 1.2345678901, trace_id: 'abc' }
    // pino's clock is read once per line: both lines get the same time to compare them.
    const now = Date.now
    Date.now = () => 1_700_000_000_000
    try {
      child.info(fields, 'request completed')
      const wrote = writeInfoLine(child as never, 'request completed', () => jsonFields({ req: requestFields(req, 'tk'), res: { statusCode: 200 }, responseTime: fields.responseTime, trace_id: 'abc' }))
      assert.equal(wrote, true)
    } finally {
      Date.now = now
    }
    assert.equal(out.length, 2)
    assert.equal(out[1], out[0])
    assert.equal(out[1].includes('secret'), false)
    assert.deepEqual(Object.keys(JSON.parse(out[1]) as object), ['level', 'time', 'pid', 'hostname', 'reqId', 'req', 'res', 'responseTime', 'trace_id', 'msg'])
  })

  test('the time is the line\'s own millisecond, as pino writes it, when the clock moves on or back', () => {
    const { out, log } = capture()
    const now = Date.now
    try {
      for (const t of [1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_001, 1_699_999_999_999, 1_700_000_000_001]) {
        Date.now = () => t
        log.info('request completed')
        writeInfoLine(log as never, 'request completed', () => '')
      }
    } finally {
      Date.now = now
    }
    assert.equal(out.length, 10)
    for (let i = 0; i < out.length; i += 2) assert.equal(out[i + 1], out[i])
    assert.deepEqual(out.filter((_, i) => i % 2 === 1).map((l) => (JSON.parse(l) as { time: number }).time),
      [1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_001, 1_699_999_999_999, 1_700_000_000_001])
  })

  test('above info: nothing is written and the fields are never built', () => {
    const { out, log } = capture('warn')
    assert.equal(writeInfoLine(log as never, 'request completed', () => { throw new Error('built') }), true)
    assert.deepEqual(out, [])
  })

  test('a logger createLogger did not make (a host app\'s own): false, so the caller logs as usual', () => {
    const other = pino({ level: 'info' }, { write () { assert.fail('written') } })
    assert.equal(writeInfoLine(other as never, 'request completed', () => ',"a":1'), false)
  })
})

describe('the request fields in an access line', () => {
  test('URLs and addresses that need escaping, and a client already gone, come out as pino writes them', () => {
    const cases = [
      { method: 'GET', url: '/a?tk=s&q="x"\\\u0001é\u2028', ip: '::ffff:1.2.3.4', socket: { remotePort: 1 } },
      { method: 'PATCH', url: '/', ip: '"quoted"', socket: {} },
      { method: 'M-SEARCH', url: '/%22', ip: '', socket: undefined },
      // A client gone before its line: its socket no longer knows its address.
      { method: 'GET', url: '/', ip: undefined, socket: { remotePort: undefined } }
    ] as unknown as FastifyRequest[]
    for (const req of cases) {
      const out: string[] = []
      const log = createLogger('info', 'tk', { write: (line: string) => { out.push(line) } })
      const now = Date.now
      Date.now = () => 1_700_000_000_000
      try {
        log.info({ req }, 'request completed')
        writeInfoLine(log as never, 'request completed', () => jsonFields({ req: requestFields(req, 'tk') }))
      } finally {
        Date.now = now
      }
      assert.equal(out[1], out[0])
      assert.doesNotThrow(() => JSON.parse(out[1]))
      assert.equal(out[1].includes('tk=s'), false)
    }
  })
})

describe('accessFields', () => {
  test('the same text as jsonFields of the access line\'s object, for values that need escaping and values left out', () => {
    const reqs = [
      { method: 'GET', url: '/a?tk=s&q="x"\\\u0001é\u2028\ud800', ip: '::ffff:1.2.3.4', socket: { remotePort: 1 } },
      { method: 'PATCH', url: '/', ip: '"quoted"', socket: {} },
      { method: 'M-SEARCH', url: '/%22', ip: '', socket: undefined },
      { method: 'GET', url: '/', ip: undefined, socket: { remotePort: undefined } }
    ] as unknown as FastifyRequest[]
    let n = 0
    for (const req of reqs) {
      for (const statusCode of [200, 101, 599]) {
        for (const responseTime of [0, 1.2345678901, 1e21, 5e-7, NaN]) {
          for (const traceId of [undefined, '0af7651916cd43dd8448eb211c80319c', 'a"b']) {
            assert.equal(accessFields(req, 'tk', statusCode, responseTime, traceId),
              jsonFields({ req: requestFields(req, 'tk'), res: { statusCode }, responseTime: toMicros(responseTime), trace_id: traceId }))
            n++
          }
        }
      }
    }
    assert.equal(n, 180)
  })
})

describe('millisText', () => {
  test('JSON.stringify of the duration rounded to the microsecond, for every µs up to 3 s and at the edges', () => {
    for (let us = 0; us <= 3_000_000; us++) {
      const ms = us / 1000
      if (millisText(ms) !== JSON.stringify(ms)) assert.fail(`${ms}: ${millisText(ms)}`)
    }
    for (const ms of [0.0004, 0.0005, 1.2345678901, 999.9996, 2147483.647, 2147483.648, 1e21, 5e-7, -1, -0.0004, NaN, Infinity]) {
      assert.equal(millisText(ms), JSON.stringify(toMicros(ms)), String(ms))
    }
  })
})

describe('closedFields', () => {
  test('the same text as jsonFields of the websocket closed line, for values that need escaping and values left out', () => {
    const base = {
      reqId: 'c-1', trace_id: undefined as string | undefined,
      req: { method: 'GET', url: '/ws?tk=secret&room="1"\\', ip: '::1' as string | undefined, socket: { remotePort: 40000 as number | undefined } },
      connId: 'c-1', route: '/ws', upstream: 'http://127.0.0.1:9001', userId: null as string | null, statusCode: 101,
      responseTime: 1.235 as number | undefined, durationMs: 12, by: 'client', clientCode: 1000, upstreamCode: 1000,
      messagesFromClient: 3, messagesToClient: 4, bytesFromClient: 2 ** 40, bytesToClient: 0
    }
    const variants = [
      base,
      { ...base, trace_id: '0af7651916cd43dd8448eb211c80319c', userId: 'al"ice\u2028', responseTime: undefined },
      { ...base, req: { method: 'GET', url: '/\u0001é', ip: undefined, socket: { remotePort: undefined } }, route: '/"q"', by: 'gateway', clientCode: 1006 },
      { ...base, responseTime: NaN, durationMs: 0.1 + 0.2, upstream: 'wss://h\\x' }
    ]
    for (const line of variants) {
      const text = closedFields(line, 'tk')
      assert.equal(text, jsonFields({ ...line, req: requestFields(line.req as unknown as FastifyRequest, 'tk') }))
      assert.equal(text.includes('secret'), false)
      assert.doesNotThrow(() => JSON.parse(`{${text.slice(1)}}`))
    }
  })
})

describe('requestChild', () => {
  /** A createLogger logger writing into `out`. */
  function logger (out: string[], level = 'info'): ReturnType<typeof createLogger> {
    return createLogger(level, 'tk', { write: (s: string) => { out.push(s) } })
  }

  test('writes what pino\'s child({ reqId }) writes, for ids that need escaping, and its children too', () => {
    for (const id of ['5f0c-1', 'r-1"\\', 'é\u2028\u0001', '']) {
      const a: string[] = []
      const b: string[] = []
      const viaPino = logger(a).child({ reqId: id })
      const direct = requestChild(logger(b) as never, id) as unknown as typeof viaPino
      assert.notEqual(direct, null)
      const now = Date.now
      Date.now = () => 1_700_000_000_000
      try {
        for (const l of [viaPino, direct]) {
          l.info({ n: 1 }, 'one')
          l.warn('two')
          l.child({ connId: 'c-1' }).info('grandchild')
          l.debug('not written')
        }
      } finally {
        Date.now = now
      }
      assert.deepEqual(b, a)
      assert.equal(a.length, 3)
      assert.deepEqual(direct.bindings(), viaPino.bindings())
      assert.deepEqual(JSON.parse(a[0]).reqId, id)
    }
  })

  test('a level set on the child is its own; the parent keeps its level', () => {
    const out: string[] = []
    const root = logger(out)
    const child = requestChild(root as never, 'r') as unknown as typeof root
    child.level = 'error'
    assert.equal(root.level, 'info')
    child.info('dropped')
    root.info('kept')
    assert.equal(out.length, 1)
  })

  test('null for a logger createLogger did not make, or once an onChild callback is set', () => {
    assert.equal(requestChild(pino({ level: 'info' }, { write () {} }) as never, 'r'), null)
    const root = logger([])
    root.onChild = () => {}
    assert.equal(requestChild(root as never, 'r'), null)
  })
})
