// HAProxy as a peer: finds the binary and writes its configuration into the run's temp dir.
// Started as `haproxy -W -db -f <tmp>/haproxy.cfg`: master-worker mode in the foreground, one
// master and one worker with one thread (`nbthread 1`), as nginx runs one master and one
// worker; the harness counts both processes. One frontend takes WebSocket and HTTP alike: in
// `mode http` HAProxy sees the Upgrade, forwards the handshake, and after the 101 relays the
// connection as a tunnel (bytes both ways, no frame parsed), under `timeout tunnel`.
// HTTP keeps client and upstream connections alive (the default `option http-keep-alive`) and
// shares idle upstream connections between clients with `http-reuse safe` (the default, spelled
// out): a client's first request gets a connection of its own, later ones may reuse any idle
// one, so HTTP reuses upstream connections as nginx's keepalive server does.
// `option forwardfor` adds X-Forwarded-For (the classic nginx snippet's header); no `log` line,
// so nothing is logged (like nginx's `access_log off`).
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { findBinary } from './util.mjs'

export const HAPROXY_INSTALL = 'apt-get install haproxy'

/** The haproxy binary on PATH or in /usr/sbin, or null. */
export const findHaproxy = () => findBinary('haproxy')

/** "2.6.12-1+deb12u4" (the first line of `haproxy -v`), or null. */
export function haproxyVersion (bin) {
  const r = spawnSync(bin, ['-v'], { encoding: 'utf8' })
  return /HAProxy version (\S+)/.exec(r.stdout ?? '')?.[1] ?? null
}

/**
 * Writes <dir>/haproxy.cfg. Returns its path.
 * @param {{ dir: string, upstreamPort: number, port: number, maxConns: number }} o
 *   maxConns: client connections to allow at once (the idle scenario's, plus room).
 */
export function writeHaproxyConfig (o) {
  const conf = `# Written by bench/run.mjs; started as: haproxy -W -db -f ${join(o.dir, 'haproxy.cfg')}
global
  nbthread 1
  # Each client connection is two sockets (client and upstream side); HAProxy raises its own
  # RLIMIT_NOFILE from maxconn when it may.
  maxconn ${o.maxConns}
  pidfile ${join(o.dir, 'haproxy.pid')}

defaults
  mode http
  maxconn ${o.maxConns}
  option http-keep-alive
  option forwardfor
  http-reuse safe
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  # After a 101: an idle WebSocket may stay open that long (nginx: proxy_read_timeout 3600s).
  timeout tunnel 3600s
  timeout http-keep-alive 60s

frontend bench
  bind 127.0.0.1:${o.port}
  default_backend echo

backend echo
  server echo 127.0.0.1:${o.upstreamPort}
`
  const path = join(o.dir, 'haproxy.cfg')
  writeFileSync(path, conf)
  return path
}
