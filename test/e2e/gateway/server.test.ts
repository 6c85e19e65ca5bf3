/**
 * The gateway process (spec sections 2-3): `src/gateway/cli.ts` spawned as `npm start` runs it, with a
 * controlled environment. Configuration errors, demo mode, quick mode (UPSTREAM_URL), config
 * files, graceful shutdown on SIGTERM, and --help.
 */
import { describe, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { upstreamFor as upstream } from '../../helpers/upstream.js'
import { closed, connect, nextMessage } from '../../helpers/ws.js'
import { freePort, waitFor } from '../../helpers/resources.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
/** Startup includes tsx compiling the sources on a cold cache. */
const START_MS = 45_000
const EXIT_MS = 10_000

interface Exit { code: number | null, signal: NodeJS.Signals | null }

interface Cli {
  child: ChildProcess
  stdout (): string
  stderr (): string
  /** Parsed JSON log lines from stdout so far. */
  logs (): Array<Record<string, unknown>>
  /** Resolves when the process exits (bounded by the caller). */
  exit: Promise<Exit>
  /** Resolves with the first log line whose msg matches, rejects if the process exits first or after `ms`. */
  waitForLog (re: RegExp, ms?: number): Promise<RegExpExecArray>
}

/** Runs the CLI with PATH only, plus `env`. Killed after the test. */
function spawnCli (t: TestContext, args: string[], env: Record<string, string> = {}): Cli {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/gateway/cli.ts', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  const logs: Array<Record<string, unknown>> = []
  let partial = ''
  child.stdout!.setEncoding('utf8')
  child.stderr!.setEncoding('utf8')
  child.stdout!.on('data', (s: string) => {
    out += s
    partial += s
    const lines = partial.split('\n')
    partial = lines.pop()!
    for (const line of lines) {
      try { logs.push(JSON.parse(line) as Record<string, unknown>) } catch { /* not a log line */ }
    }
  })
  child.stderr!.on('data', (s: string) => { err += s })
  const exit = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exit
    }
  })
  const waitForLog = (re: RegExp, ms = START_MS): Promise<RegExpExecArray> => new Promise((resolve, reject) => {
    let seen = 0
    const check = (): boolean => {
      for (; seen < logs.length; seen++) {
        const m = re.exec(String(logs[seen].msg ?? ''))
        if (m !== null) { cleanup(); resolve(m); return true }
      }
      return false
    }
    const onData = (): void => { check() }
    const onExit = (): void => { cleanup(); reject(new Error(`process exited before logging ${re}\nstdout: ${out}\nstderr: ${err}`)) }
    const timer = setTimeout(() => { cleanup(); reject(new Error(`no log line matching ${re} within ${ms} ms\nstdout: ${out}\nstderr: ${err}`)) }, ms)
    const cleanup = (): void => { clearTimeout(timer); child.stdout!.off('data', onData); child.off('exit', onExit) }
    child.stdout!.on('data', onData)
    child.once('exit', onExit)
    check()
  })
  return { child, stdout: () => out, stderr: () => err, logs: () => logs, exit, waitForLog }
}

/** Waits for the exit, failing after `ms`. */
async function exitWithin (cli: Cli, ms = EXIT_MS): Promise<Exit> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`process still running after ${ms} ms\nstdout: ${cli.stdout()}\nstderr: ${cli.stderr()}`)), ms)
  })
  try {
    return await Promise.race([cli.exit, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Starts the CLI and resolves with its base URL once it listens. */
async function startCli (t: TestContext, args: string[], env: Record<string, string> = {}): Promise<Cli & { url: string, wsUrl: string, port: number }> {
  const cli = spawnCli(t, args, { HOST: '127.0.0.1', PORT: '0', ...env })
  const m = await cli.waitForLog(/^Server listening at http:\/\/127\.0\.0\.1:(\d+)$/)
  const port = Number(m[1])
  return Object.assign(cli, { port, url: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}` })
}

function tempDir (t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-server-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function getJson<T = Record<string, unknown>> (url: string, init: RequestInit = {}): Promise<{ status: number, body: T }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000), ...init })
  return { status: res.status, body: await res.json() as T }
}

interface Echo { method: string, url: string, path: string, query: Record<string, string>, headers: Record<string, string>, body: string }

// Each case costs a process start, so only one per kind of failure; every message of the
// validation itself (types, durations, sizes, UPSTREAM_URL...) is covered by test/unit/config/config.test.ts.
// Process starts are CPU-bound (TypeScript loaded through tsx): run them a few at a time.
describe('the tollgate process', { concurrency: 4 }, () => {
  const cases: Array<{ name: string, file?: [string, string], env?: (dir: string) => Record<string, string>, expect: RegExp }> = [
    {
      name: 'unknown key',
      file: ['unknown-key.yaml', 'server:\n  host: 127.0.0.1\n  prot: 8080\n'],
      expect: /server\.prot: unknown key/
    },
    {
      name: 'unknown upstream',
      file: ['unknown-upstream.json', JSON.stringify({ upstreams: { chat: { targets: ['http://127.0.0.1:9001'] } }, routes: [{ prefix: '/chat', upstream: 'chatt' }] })],
      expect: /routes\[0\]\.upstream: unknown upstream "chatt"/
    },
    {
      name: 'missing file (GATEWAY_CONFIG)',
      env: (dir) => ({ GATEWAY_CONFIG: join(dir, 'nope.yaml') }),
      expect: /GATEWAY_CONFIG: cannot read config file .*nope\.yaml \(ENOENT\)/
    },
    {
      name: 'unparsable YAML',
      file: ['broken.yaml', 'routes:\n  - prefix: /a\n    upstream: [unclosed\n  - : :\n'],
      expect: /broken\.yaml: invalid YAML at line \d+/
    },
    {
      name: 'bad PORT',
      env: () => ({ PORT: 'eighty' }),
      expect: /PORT: invalid port "eighty"/
    }
  ]
  for (const c of cases) {
    test(`invalid configuration (${c.name}): exit code 1 and one line naming the key`, { timeout: START_MS + EXIT_MS }, async (t) => {
      const dir = tempDir(t)
      const env: Record<string, string> = { HOST: '127.0.0.1', PORT: '0', ...c.env?.(dir) }
      if (c.file !== undefined) {
        writeFileSync(join(dir, c.file[0]), c.file[1])
        env.GATEWAY_CONFIG = join(dir, c.file[0])
      }
      const cli = spawnCli(t, [], env)
      const exit = await exitWithin(cli, START_MS)
      const stderr = cli.stderr()
      assert.deepEqual(exit, { code: 1, signal: null }, `stderr: ${stderr}`)
      const lines = stderr.split('\n').filter((l) => l.trim() !== '')
      assert.equal(lines.length, 1, `exactly one line on stderr, got:\n${stderr}`)
      assert.match(lines[0], c.expect)
      assert.match(lines[0], /^tollgate: invalid configuration: /)
      assert.ok(!stderr.includes('    at '), `no stack trace:\n${stderr}`)
      assert.ok(!cli.stdout().includes('    at '), `no stack trace on stdout:\n${cli.stdout()}`)
      assert.ok(!cli.logs().some((l) => /Server listening/.test(String(l.msg))), 'must not have started listening')
    })
  }

  test('port already in use: exit code 1 and one line, no stack trace', { timeout: START_MS + EXIT_MS }, async (t) => {
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    t.after(() => new Promise<void>((resolve) => blocker.close(() => resolve())))
    const port = (blocker.address() as { port: number }).port
    const cli = spawnCli(t, [], { HOST: '127.0.0.1', PORT: String(port) })
    const exit = await exitWithin(cli, START_MS)
    assert.deepEqual(exit, { code: 1, signal: null }, `stderr: ${cli.stderr()}`)
    const lines = cli.stderr().split('\n').filter((l) => l.trim() !== '')
    assert.equal(lines.length, 1, cli.stderr())
    assert.match(lines[0], /^tollgate: cannot start: .*EADDRINUSE/)
    assert.ok(!cli.stderr().includes('    at '))
  })

  test('LOG_FORMAT=pretty prints readable lines, json (the default off a terminal) JSON; another value is refused', { timeout: 2 * START_MS + EXIT_MS }, async (t) => {
    const port = await freePort()
    const pretty = spawnCli(t, [], { LOG_FORMAT: 'pretty', PORT: String(port), HOST: '127.0.0.1' })
    await waitFor(() => /demo: real upstreams/.test(pretty.stdout()), () => pretty.stdout(), START_MS)
    const lines = pretty.stdout().split('\n').filter((l) => l.trim() !== '')
    assert.ok(lines.length > 3)
    for (const line of lines) assert.throws(() => JSON.parse(line), `not JSON: ${line}`)
    assert.ok(lines.some((l) => /INFO/.test(l) && l.includes('demo: dashboard')), pretty.stdout())
    const json = spawnCli(t, [], { LOG_FORMAT: 'JSON', PORT: '0', HOST: '127.0.0.1' })
    await json.waitForLog(/^demo: real upstreams/, START_MS)
    assert.ok(json.logs().some((l) => l.level === 30 && /^demo: dashboard/.test(String(l.msg))))
    const bad = spawnCli(t, [], { LOG_FORMAT: 'xml' })
    const exit = await bad.exit
    assert.equal(exit.code, 1)
    assert.match(bad.stderr(), /LOG_FORMAT: invalid format "xml" \(pretty or json\)/)
  })

  test('on a terminal the default is readable lines (run under a pty with script(1))', { timeout: START_MS + EXIT_MS }, async (t) => {
    if (spawnSync('script', ['--version'], { encoding: 'utf8' }).status !== 0) { t.skip('script(1) (util-linux) is not installed'); return }
    // script gives the CLI a terminal for stdout; LOG_FORMAT is not set.
    // exec: the gateway replaces the shell script starts, so it is script's own child (stopped below).
    const child = spawn('script', ['-qfec', `exec ${JSON.stringify(process.execPath)} --import tsx src/gateway/cli.ts`, '/dev/null'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', TERM: 'dumb' },
      stdio: ['pipe', 'pipe', 'pipe']
    })
    let out = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (d: string) => { out += d })
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    t.after(async () => {
      if (child.exitCode !== null) return
      // The gateway runs in script's own session: it is stopped as npm start would be (SIGTERM),
      // and script exits with it.
      const kids = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).stdout.split('\n').filter((x) => x !== '')
      for (const pid of kids) process.kill(Number(pid), 'SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), EXIT_MS)
      await exited
      clearTimeout(timer)
    })
    // eslint-disable-next-line no-control-regex -- the colours a terminal gets
    const plain = (): string => out.replace(/\x1b\[[0-9;]*m/g, '').replace(/\r/g, '')
    await waitFor(() => /demo: real upstreams/.test(plain()), () => out, START_MS)
    const lines = plain().split('\n').filter((l) => l.trim() !== '')
    for (const line of lines) assert.throws(() => JSON.parse(line), `not JSON: ${line}`)
    assert.ok(lines.some((l) => /INFO/.test(l) && l.includes('demo: dashboard')), plain())
  })

  test('--help prints the usage and exits 0', { timeout: START_MS + EXIT_MS }, async (t) => {
    const cli = spawnCli(t, ['--help'])
    assert.deepEqual(await exitWithin(cli, START_MS), { code: 0, signal: null })
    assert.match(cli.stdout(), /^Usage: tollgate \[--config PATH\]/)
    assert.match(cli.stdout(), /UPSTREAM_URL/)
    assert.equal(cli.stderr(), '')
  })

  test('demo mode: banner, /echo over HTTP and WebSocket', { timeout: START_MS + EXIT_MS }, async (t) => {
    // HOST and PORT are server settings: they do not turn demo mode off.
    const gw = await startCli(t, [])
    await gw.waitForLog(/^demo: real upstreams/, 10_000)
    const msgs = gw.logs().map((l) => String(l.msg))
    const banner = msgs.join('\n')
    assert.ok(msgs.some((m) => m.includes(`${gw.wsUrl}/echo`)), `a ws:// URL in the banner:\n${banner}`)
    assert.ok(msgs.some((m) => new RegExp(`curl ${gw.url}/echo`).test(m)), `a curl line in the banner:\n${banner}`)
    const tokenLine = msgs.find((m) => /admin token/i.test(m))
    assert.ok(tokenLine !== undefined, `an admin token line in the banner:\n${banner}`)
    assert.match(tokenLine, /admin token.*: [A-Za-z0-9_-]{16,}$/)
    // The dashboard's URL next to the token.
    const tokenAt = msgs.indexOf(tokenLine)
    assert.ok(msgs.slice(tokenAt, tokenAt + 3).some((m) => m.includes(`${gw.url}/admin/ui`)), `the dashboard URL next to the token:\n${banner}`)
    assert.ok(msgs.some((m) => m.includes('UPSTREAM_URL') && m.includes('GATEWAY_CONFIG')), `how to configure real upstreams:\n${banner}`)

    const res = await getJson<Echo>(`${gw.url}/echo/hi?name=you`)
    assert.equal(res.status, 200)
    assert.equal(res.body.method, 'GET')
    assert.equal(res.body.path, '/echo/hi')
    assert.deepEqual(res.body.query, { name: 'you' })
    assert.equal(res.body.headers['x-forwarded-for'], '127.0.0.1')
    const post = await getJson<Echo>(`${gw.url}/echo`, { method: 'POST', body: 'payload', headers: { 'content-type': 'text/plain' } })
    assert.equal(post.body.body, 'payload')

    const ws = await connect(`${gw.wsUrl}/echo`)
    t.after(() => ws.terminate())
    ws.send('hello')
    const text = await nextMessage(ws)
    assert.deepEqual([text.data.toString(), text.isBinary], ['hello', false])
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255])
    ws.send(bytes)
    const bin = await nextMessage(ws)
    assert.deepEqual([bin.data.toString('hex'), bin.isBinary], [bytes.toString('hex'), true])
    ws.close(1000)
  })

  test('quick mode: UPSTREAM_URL proxies every path over HTTP and WebSocket', { timeout: START_MS + EXIT_MS }, async (t) => {
    const up = await upstream(t)
    const gw = await startCli(t, [], { UPSTREAM_URL: up.url })
    const res = await getJson<Echo>(`${gw.url}/anything/deep?x=1`)
    assert.equal(res.status, 200)
    assert.equal(res.body.url, '/anything/deep?x=1')
    // No demo: /echo goes to the configured upstream too.
    assert.equal((await getJson<Echo>(`${gw.url}/echo`)).body.url, '/echo')
    assert.ok(!gw.logs().some((l) => /demo/i.test(String(l.msg))), 'no demo banner')

    const ws = await connect(`${gw.wsUrl}/anything/ws?room=1`)
    t.after(() => ws.terminate())
    assert.equal(up.upgrades.at(-1)?.url, '/anything/ws?room=1')
    ws.send('through')
    assert.equal((await nextMessage(ws)).data.toString(), 'through')
    ws.close(1000)
  })

  test('GATEWAY_CONFIG=file.yaml serves its routes; environment wins over the file', { timeout: START_MS + EXIT_MS }, async (t) => {
    const up = await upstream(t)
    const dir = tempDir(t)
    const file = join(dir, 'gateway.yaml')
    writeFileSync(file, [
      'server:',
      '  host: 127.0.0.1',
      '  port: 1            # PORT=0 from the environment wins',
      'upstreams:',
      '  main:',
      `    targets: [${up.url}]`,
      'routes:',
      '  - prefix: /api',
      '    upstream: main',
      '    rewritePrefix: /',
      '    headers: { x-from-yaml: "yes" }',
      ''
    ].join('\n'))
    const gw = await startCli(t, [], { GATEWAY_CONFIG: file })
    assert.notEqual(gw.port, 1)
    const res = await getJson<Echo>(`${gw.url}/api/items?x=1`)
    assert.equal(res.status, 200)
    assert.equal(res.body.url, '/items?x=1')
    assert.equal(res.body.headers['x-from-yaml'], 'yes')
    assert.equal((await fetch(`${gw.url}/echo`, { signal: AbortSignal.timeout(10_000) })).status, 404, 'no demo route with a config file')
    const ws = await connect(`${gw.wsUrl}/api/ws`)
    t.after(() => ws.terminate())
    ws.send('yaml')
    assert.equal((await nextMessage(ws)).data.toString(), 'yaml')
    ws.close(1000)
  })

  test('--config file.json serves its routes', { timeout: START_MS + EXIT_MS }, async (t) => {
    const up = await upstream(t)
    const dir = tempDir(t)
    const file = join(dir, 'gateway.json')
    writeFileSync(file, JSON.stringify({ routes: [{ prefix: '/j', upstream: up.url, rewritePrefix: '/v1' }] }))
    const gw = await startCli(t, ['--config', file])
    const res = await getJson<Echo>(`${gw.url}/j/x`)
    assert.equal(res.status, 200)
    assert.equal(res.body.url, '/v1/x')
    assert.equal((await fetch(`${gw.url}/echo`, { signal: AbortSignal.timeout(10_000) })).status, 404)
  })

  test('graceful shutdown: at SIGTERM an HTTP request in flight completes with 200, an open WebSocket gets 1001, the process exits 0', { timeout: START_MS + EXIT_MS }, async (t) => {
    let arrived!: () => void
    const arrival = new Promise<void>((resolve) => { arrived = resolve })
    const up = await upstream(t, {
      http: (_req, res) => {
        arrived()
        // The upstream is slow on purpose: the request is still in flight when SIGTERM arrives.
        setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('slow done'), 500)
      }
    })
    // One process for both kinds of connection: each start costs a TypeScript load.
    const gw = await startCli(t, [], { UPSTREAM_URL: up.url })
    const upstreamSide = up.nextConnection()
    const ws = await connect(`${gw.wsUrl}/live`)
    t.after(() => ws.terminate())
    ws.send('before')
    assert.equal((await nextMessage(ws)).data.toString(), 'before')
    const { ws: upWs } = await upstreamSide
    const upClosed = new Promise<number>((resolve) => upWs.once('close', (code: number) => resolve(code)))
    const clientClosed = closed(ws)

    const pending = fetch(`${gw.url}/slow`, { signal: AbortSignal.timeout(8000) })
    await arrival
    const signalled = performance.now()
    assert.ok(gw.child.kill('SIGTERM'))

    assert.equal((await clientClosed).code, 1001)
    assert.equal(await upClosed, 1001, 'the upstream side is closed too')
    const res = await pending
    assert.equal(res.status, 200)
    assert.equal(await res.text(), 'slow done')
    assert.deepEqual(await exitWithin(gw), { code: 0, signal: null }, gw.stderr())
    // Promptly: neither the finished request's keep-alive socket nor anything else holds the exit.
    const took = performance.now() - signalled
    assert.ok(took < 12_000, `exited ${Math.round(took)} ms after SIGTERM`)
    assert.ok(gw.logs().some((l) => l.msg === 'shutdown complete'), gw.stdout())
    assert.ok(!gw.logs().some((l) => /did not finish in time/.test(String(l.msg))), gw.stdout())
  })
})
