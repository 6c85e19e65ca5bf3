/**
 * Static routes (spec section 3, `static:`): files from a folder, like nginx `root`, with the
 * right content types, and never a file from outside the folder whatever the path says.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startGateway, type TestGateway } from '../../helpers/gateway.js'
import { startUpstream } from '../../helpers/upstream.js'

const SECRET = 'TOP-SECRET-OUTSIDE-THE-ROOT'
const SIBLING = 'SIBLING-FOLDER-SECRET'
const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex')

interface Res { status: number, headers: IncomingHttpHeaders, body: Buffer }

/** GET with node:http: the path goes out byte for byte (fetch would resolve `..` first). */
function get (base: string, path: string): Promise<Res> {
  const u = new URL(base)
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, signal: AbortSignal.timeout(10_000) }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** Sends a raw request line (for paths node:http would refuse) and returns the whole answer. */
function rawGet (port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1')
    let out = ''
    socket.setEncoding('utf8')
    socket.setTimeout(10_000, () => { socket.destroy(); reject(new Error(`no answer for ${path}`)) })
    socket.on('data', (s: string) => { out += s })
    socket.on('end', () => resolve(out))
    socket.on('close', () => resolve(out))
    socket.on('error', reject)
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)
  })
}

/**
 * A folder tree: <dir>/secret.txt (outside), <dir>/public (the root), <dir>/public-evil (a
 * sibling whose name starts with the root's).
 */
function tree (t: TestContext): { dir: string, root: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-static-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const root = join(dir, 'public')
  mkdirSync(join(root, 'sub'), { recursive: true })
  mkdirSync(join(dir, 'public-evil'))
  writeFileSync(join(dir, 'secret.txt'), SECRET)
  writeFileSync(join(dir, 'public-evil', 'x.txt'), SIBLING)
  writeFileSync(join(root, 'index.html'), '<!doctype html><title>home</title>')
  writeFileSync(join(root, 'style.css'), 'body { color: red }')
  writeFileSync(join(root, 'app.js'), 'console.log(1)')
  writeFileSync(join(root, 'data.json'), '{"ok":true}')
  writeFileSync(join(root, 'notes.txt'), 'plain notes')
  writeFileSync(join(root, 'pixel.png'), PNG)
  writeFileSync(join(root, 'sub', 'page.html'), '<p>sub</p>')
  writeFileSync(join(root, 'with space.txt'), 'spaced')
  return { dir, root }
}

async function gateway (t: TestContext, root: string): Promise<TestGateway> {
  const up = await startUpstream()
  t.after(() => up.close())
  // A proxy route beside the static one: neither may shadow the other.
  const gw = await startGateway({ routes: [{ prefix: '/static', static: root }, { prefix: '/api', upstream: up.url }] })
  t.after(() => gw.close())
  return gw
}

test('files are served with their content type', { timeout: 30_000 }, async (t) => {
  const { root } = tree(t)
  const gw = await gateway(t, root)
  const cases: Array<[string, RegExp, string | Buffer]> = [
    ['/static/index.html', /^text\/html/, '<!doctype html><title>home</title>'],
    ['/static/style.css', /^text\/css/, 'body { color: red }'],
    ['/static/app.js', /^(text|application)\/javascript/, 'console.log(1)'],
    ['/static/data.json', /^application\/json/, '{"ok":true}'],
    ['/static/notes.txt', /^text\/plain/, 'plain notes'],
    ['/static/pixel.png', /^image\/png$/, PNG],
    ['/static/sub/page.html', /^text\/html/, '<p>sub</p>'],
    ['/static/with%20space.txt', /^text\/plain/, 'spaced'],
    // The folder's index.
    ['/static/', /^text\/html/, '<!doctype html><title>home</title>'],
    // Query strings are ignored.
    ['/static/notes.txt?v=2', /^text\/plain/, 'plain notes']
  ]
  for (const [path, type, body] of cases) {
    const res = await get(gw.url, path)
    assert.equal(res.status, 200, path)
    assert.match(String(res.headers['content-type']), type, path)
    assert.equal(res.body.toString('hex'), Buffer.from(body).toString('hex'), path)
  }
  // HEAD: headers without a body.
  const head = await new Promise<Res>((resolve, reject) => {
    const u = new URL(gw.url)
    httpRequest({ host: u.hostname, port: u.port, method: 'HEAD', path: '/static/style.css', signal: AbortSignal.timeout(10_000) }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.alloc(0) }))
    }).on('error', reject).end()
  })
  assert.equal(head.status, 200)
  assert.match(String(head.headers['content-type']), /^text\/css/)
  // The proxy route still works beside it.
  assert.equal((await get(gw.url, '/api/x')).status, 200)
})

test('missing files are 404; the bare prefix redirects to the folder', { timeout: 30_000 }, async (t) => {
  const { root } = tree(t)
  const gw = await gateway(t, root)
  for (const path of ['/static/nope.txt', '/static/sub/nope.html', '/static/nope/', '/staticx', '/staticx/index.html', '/static.txt']) {
    const res = await get(gw.url, path)
    assert.equal(res.status, 404, path)
    assert.ok(!res.body.toString().includes('home'), path)
  }
  const bare = await get(gw.url, '/static')
  assert.ok([301, 302, 307, 308].includes(bare.status), `/static answered ${bare.status}`)
  assert.equal(bare.headers.location, '/static/')
})

for (const prefix of ['/static', '/']) {
  test(`path traversal never reaches a file outside the folder (static route "${prefix}")`, { timeout: 30_000 }, async (t) => {
    const { dir, root } = tree(t)
    await traversal(t, dir, root, prefix)
  })
}

async function traversal (t: TestContext, dir: string, root: string, prefix: string): Promise<void> {
  let gw: TestGateway
  if (prefix === '/static') {
    gw = await gateway(t, root)
  } else {
    gw = await startGateway({ routes: [{ prefix: '/', static: root }] })
    t.after(() => gw.close())
    assert.equal((await get(gw.url, '/notes.txt')).status, 200)
    assert.equal((await get(gw.url, '/health')).body.toString(), '{"status":"ok"}')
  }
  // The attempts are written for "/static"; under "/" the same paths lose that prefix.
  const at = (p: string): string => prefix === '/static' ? p : p.replace(/^\/static/, '')
  const attempts = [
    '/static/../secret.txt',
    '/static/../../secret.txt',
    '/static/sub/../../secret.txt',
    '/static/%2e%2e/secret.txt',
    '/static/%2E%2E/secret.txt',
    '/static/.%2e/secret.txt',
    '/static/%2e%2e%2fsecret.txt',
    '/static/..%2fsecret.txt',
    '/static/..%2Fsecret.txt',
    '/static/..%5csecret.txt',
    '/static/..\\secret.txt',
    '/static/sub/..%2f..%2fsecret.txt',
    '/static/%252e%252e/secret.txt',
    '/static/%252e%252e%252fsecret.txt',
    '/static/..%252fsecret.txt',
    '/static/%c0%ae%c0%ae/secret.txt',
    '/static/..%00/secret.txt',
    '/static/....//secret.txt',
    '/static/..;/secret.txt',
    '/static//../secret.txt',
    '/static/./../secret.txt',
    '/static/../public-evil/x.txt',
    '/static/%2e%2e/public-evil/x.txt',
    '/static/..%2fpublic-evil%2fx.txt',
    `/static/${encodeURIComponent(join(dir, 'secret.txt'))}`,
    `/static/${join(dir, 'secret.txt')}`,
    `/static//${join(dir, 'secret.txt')}`,
    '/static/%2fetc%2fpasswd',
    '/static/../../../../../../etc/passwd',
    '/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd'
  ]
  for (const path of attempts.map(at)) {
    const res = await get(gw.url, path)
    const body = res.body.toString()
    assert.ok(!body.includes(SECRET) && !body.includes(SIBLING) && !body.includes('root:'), `${path} leaked a file outside the folder (status ${res.status})`)
    assert.notEqual(res.status, 200, `${path} answered 200`)
    assert.ok(res.status < 500, `${path} answered ${res.status}`)
  }
  // Request lines node:http refuses to send (raw backslashes and dot segments as the client typed them).
  for (const path of ['/static/..\\..\\secret.txt', '/static\\..\\secret.txt', '/static/.. /secret.txt'].map(at)) {
    const answer = await rawGet(gw.port, path)
    assert.ok(!answer.includes(SECRET) && !answer.includes(SIBLING), `${path} leaked a file outside the folder`)
    assert.doesNotMatch(answer.split('\r\n')[0] ?? '', / 200 /, path)
  }
  // The gateway still serves the folder afterwards.
  assert.equal((await get(gw.url, at('/static/notes.txt'))).status, 200)
}
