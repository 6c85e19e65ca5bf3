/**
 * Static routes keep to their folder: dotfiles (any path segment starting with `.`) are 404 unless
 * `dotfiles: allow`, and a symlink whose real path leaves the real root (a file symlink, or a
 * folder symlink on the way) is 404 unless `followSymlinks: true`, while symlinks that stay inside
 * keep working. A refused file answers exactly as a missing one, whether or not it exists.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gatewayFor, type TestGateway } from '../../helpers/gateway.js'
import type { GatewayConfigInput } from '../../../src/config/schema.js'

const OUTSIDE = 'OUTSIDE-THE-ROOT'
const DOT = 'DOTFILE-CONTENT'

interface Res { status: number, headers: IncomingHttpHeaders, body: string }

/** GET (or HEAD) with node:http: the path goes out as written. */
function get (gw: TestGateway, path: string, method = 'GET'): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: gw.port, path, method, signal: AbortSignal.timeout(10_000) }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/**
 * <dir>/public is the root; <dir>/secret.txt and <dir>/outside/ lie outside it. Inside the root:
 * dotfiles, symlinks that leave it (file, folder, dangling) and symlinks that stay in (one of them
 * by way of a path outside: only the real path counts). <dir>/current is a symlink to the root.
 */
function tree (t: TestContext): { dir: string, root: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-static-sec-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const root = join(dir, 'public')
  mkdirSync(join(root, 'sub'), { recursive: true })
  mkdirSync(join(root, '.git'))
  mkdirSync(join(root, '.well-hidden'))
  mkdirSync(join(dir, 'outside'))
  writeFileSync(join(dir, 'secret.txt'), OUTSIDE)
  writeFileSync(join(dir, 'outside', 'o.txt'), OUTSIDE)
  writeFileSync(join(dir, 'outside', 'index.html'), OUTSIDE)
  writeFileSync(join(root, 'a.txt'), 'inside a')
  writeFileSync(join(root, 'index.html'), 'home')
  writeFileSync(join(root, 'sub', 'page.txt'), 'inside page')
  writeFileSync(join(root, 'sub', 'index.html'), 'sub home')
  writeFileSync(join(root, '.env'), DOT)
  writeFileSync(join(root, '.git', 'config'), DOT)
  writeFileSync(join(root, '.git', 'index.html'), DOT)
  writeFileSync(join(root, '.well-hidden', 'x.txt'), DOT)
  writeFileSync(join(root, 'sub', '.hidden'), DOT)
  // Leaving the root.
  symlinkSync(join(dir, 'secret.txt'), join(root, 'leak.txt'))
  symlinkSync('../secret.txt', join(root, 'leak-relative.txt'))
  symlinkSync(join(dir, 'outside'), join(root, 'outdir'))
  symlinkSync(join(dir, 'nothing-here.txt'), join(root, 'dangling.txt'))
  symlinkSync(join(dir, 'outside'), join(root, 'sub', 'deep-out'))
  // Staying inside.
  symlinkSync(join(root, 'a.txt'), join(root, 'alias.txt'))
  symlinkSync('a.txt', join(root, 'alias-relative.txt'))
  symlinkSync(join(root, 'sub'), join(root, 'subalias'))
  symlinkSync('../public/a.txt', join(root, 'bounce.txt'))
  symlinkSync(root, join(dir, 'current'))
  return { dir, root }
}

async function gateway (t: TestContext, route: Record<string, unknown>): Promise<TestGateway> {
  return await gatewayFor(t, { routes: [{ prefix: '/static', ...route } as NonNullable<GatewayConfigInput['routes']>[number]] })
}

/** A refusal looks exactly like a missing file: same status, same body but for the path it names. */
async function assertLikeMissing (gw: TestGateway, path: string, method = 'GET'): Promise<void> {
  const res = await get(gw, path, method)
  const missing = await get(gw, '/static/no-such-file', method)
  assert.equal(res.status, 404, `${method} ${path}`)
  assert.ok(!res.body.includes(OUTSIDE) && !res.body.includes(DOT), `${path} leaked content`)
  // The message names the (normalised) path; everything else is the same.
  const shape = (body: string): string => body.replace(/"Route [A-Z]+:[^"]* not found"/, '"Route <path> not found"')
  if (method !== 'HEAD') assert.match(res.body, /"Route [A-Z]+:\/static\/[^"]* not found"/, path)
  assert.equal(shape(res.body), shape(missing.body), `${path}: body differs from a missing file's`)
  assert.equal(res.headers['content-type'], missing.headers['content-type'], path)
  assert.equal(res.headers.location, undefined, `${path}: no redirect (it would tell a folder is there)`)
}

const DOTFILES = ['/static/.env', '/static/.git/config', '/static/.git/', '/static/.git', '/static/sub/.hidden', '/static/.well-hidden/x.txt', '/static/%2eenv', '/static/sub/%2Ehidden', '/static/.env?x=1', '/static/.nope', '/static/.nope/x']
const LEAVING = ['/static/leak.txt', '/static/leak-relative.txt', '/static/outdir/o.txt', '/static/outdir/', '/static/outdir', '/static/outdir/nope.txt', '/static/dangling.txt', '/static/sub/deep-out/o.txt', '/static/subalias/deep-out/o.txt', '/static/outdir/index.html']
const INSIDE: Array<[string, string]> = [['/static/a.txt', 'inside a'], ['/static/alias.txt', 'inside a'], ['/static/alias-relative.txt', 'inside a'], ['/static/bounce.txt', 'inside a'], ['/static/subalias/page.txt', 'inside page'], ['/static/subalias/', 'sub home'], ['/static/sub/', 'sub home'], ['/static/', 'home']]

test('dotfiles are 404 by default, whether they exist or not, for GET and HEAD', { timeout: 30_000 }, async (t) => {
  const { root } = tree(t)
  const gw = await gateway(t, { static: root })
  for (const path of DOTFILES) await assertLikeMissing(gw, path)
  for (const path of ['/static/.env', '/static/.git/config']) await assertLikeMissing(gw, path, 'HEAD')
  // Files whose name only contains a dot are served as before.
  assert.equal((await get(gw, '/static/a.txt')).body, 'inside a')
})

test('dotfiles: allow serves them', { timeout: 30_000 }, async (t) => {
  const { root } = tree(t)
  const gw = await gateway(t, { static: root, dotfiles: 'allow' })
  for (const path of ['/static/.env', '/static/.git/config', '/static/sub/.hidden', '/static/.well-hidden/x.txt', '/static/%2eenv']) {
    const res = await get(gw, path)
    assert.equal(res.status, 200, path)
    assert.equal(res.body, DOT, path)
  }
  assert.equal((await get(gw, '/static/.nope')).status, 404)
  // Symlinks are still checked.
  await assertLikeMissing(gw, '/static/leak.txt')
})

test('symlinks that leave the root are 404 (files, folders, dangling); the ones that stay inside work', { timeout: 30_000 }, async (t) => {
  const { root } = tree(t)
  const gw = await gateway(t, { static: root })
  for (const path of LEAVING) await assertLikeMissing(gw, path)
  await assertLikeMissing(gw, '/static/leak.txt', 'HEAD')
  for (const [path, body] of INSIDE) {
    const res = await get(gw, path)
    assert.equal(res.status, 200, path)
    assert.equal(res.body, body, path)
  }
  // A folder symlink inside the root still gets the redirect to its slash form.
  const bare = await get(gw, '/static/subalias')
  assert.equal(bare.status, 301)
  assert.equal(bare.headers.location, '/static/subalias/')
})

test('a root that is itself a symlink: the check is against its real path', { timeout: 30_000 }, async (t) => {
  const { dir } = tree(t)
  const gw = await gateway(t, { static: join(dir, 'current') })
  for (const path of LEAVING) await assertLikeMissing(gw, path)
  for (const [path, body] of INSIDE) assert.equal((await get(gw, path)).body, body, path)
})

test('followSymlinks: true follows symlinks out of the root (dotfiles stay refused)', { timeout: 30_000 }, async (t) => {
  const { root } = tree(t)
  const gw = await gateway(t, { static: root, followSymlinks: true })
  for (const path of ['/static/leak.txt', '/static/leak-relative.txt', '/static/outdir/o.txt', '/static/sub/deep-out/o.txt', '/static/outdir/']) {
    const res = await get(gw, path)
    assert.equal(res.status, 200, path)
    assert.equal(res.body, OUTSIDE, path)
  }
  assert.equal((await get(gw, '/static/dangling.txt')).status, 404)
  await assertLikeMissing(gw, '/static/.env')
  for (const [path, body] of INSIDE) assert.equal((await get(gw, path)).body, body, path)
})

test('a static route at "/" checks the same way', { timeout: 30_000 }, async (t) => {
  const { root } = tree(t)
  const gw = await gatewayFor(t, { routes: [{ prefix: '/', static: root }] })
  for (const path of ['/.env', '/.git/config', '/leak.txt', '/outdir/o.txt', '/outdir']) {
    const res = await get(gw, path)
    assert.equal(res.status, 404, path)
    assert.ok(!res.body.includes(OUTSIDE) && !res.body.includes(DOT), path)
  }
  assert.equal((await get(gw, '/alias.txt')).body, 'inside a')
  assert.equal((await get(gw, '/')).body, 'home')
})

test('a route with auth answers 401 before anything about its files is told', { timeout: 30_000 }, async (t) => {
  const { root } = tree(t)
  const gw = await gatewayFor(t, { auth: { jwt: { secret: 'x'.repeat(32) } }, routes: [{ prefix: '/static', static: root, auth: 'required' }] })
  for (const path of ['/static/leak.txt', '/static/.env', '/static/a.txt', '/static/no-such-file']) assert.equal((await get(gw, path)).status, 401, path)
})
