// Caddy as a peer: finds the binary and writes its Caddyfile into the run's temp dir.
// Started as `caddy run --config <tmp>/Caddyfile --adapter caddyfile` with GOMAXPROCS=1 (Go
// would otherwise run goroutines on every core, the load core included, where nginx and HAProxy
// use one thread) and HOME, XDG_DATA_HOME and XDG_CONFIG_HOME in the temp dir (Caddy writes its
// autosave and storage there; nothing of the user's is read or written).
// The site is `http://127.0.0.1:<port>` with `reverse_proxy 127.0.0.1:<upstream>`: Caddy
// proxies a WebSocket upgrade itself (after the 101, bytes copied both ways, no frame parsed),
// adds X-Forwarded-For/-Proto/-Host, and keeps upstream connections alive for HTTP (its
// defaults). `admin off`: no admin endpoint; `auto_https off`: no certificates, no redirects;
// no `log` directive in the site: no access log (like nginx's `access_log off`). Caddy's own
// log (startup, errors) goes to stderr at WARN, so warnings and errors are seen and counted.
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { findBinary } from './util.mjs'

export const CADDY_INSTALL = 'apt-get install caddy'

/** The caddy binary on PATH or in /usr/sbin, or null. */
export const findCaddy = () => findBinary('caddy')

/** "2.6.2" (from `caddy version`), or null. */
export function caddyVersion (bin) {
  const r = spawnSync(bin, ['version'], { encoding: 'utf8' })
  return /v?(\d+\.\d+\.\d+\S*)/.exec(r.stdout ?? '')?.[1] ?? null
}

/** The environment Caddy runs with: one Go thread for goroutines, its files in the temp dir. */
export function caddyEnv (dir, env) {
  const home = join(dir, 'caddy-home')
  for (const d of ['data', 'config']) mkdirSync(join(home, d), { recursive: true })
  return { ...env, GOMAXPROCS: '1', HOME: home, XDG_DATA_HOME: join(home, 'data'), XDG_CONFIG_HOME: join(home, 'config') }
}

/**
 * Writes <dir>/Caddyfile (tab-indented, as `caddy fmt` writes it: Caddy warns otherwise).
 * Returns its path.
 * @param {{ dir: string, upstreamPort: number, port: number }} o
 */
export function writeCaddyfile (o) {
  const conf = `# Written by bench/run.mjs; started as: caddy run --config ${join(o.dir, 'Caddyfile')} --adapter caddyfile
{
	admin off
	auto_https off
	log {
		output stderr
		level WARN
	}
}

http://127.0.0.1:${o.port} {
	reverse_proxy 127.0.0.1:${o.upstreamPort}
}
`
  const path = join(o.dir, 'Caddyfile')
  writeFileSync(path, conf)
  return path
}
