// nginx as a peer: finds the binary and writes its configuration into the run's temp dir.
// The WebSocket part is the classic reverse-proxy config (Upgrade/Connection map, HTTP/1.1,
// X-Forwarded-*, long read timeout). Two servers in one nginx (one master, one worker):
//   - `classic`:   proxy_pass straight to the upstream; every HTTP request opens a new upstream
//                  connection (Connection: close), as the classic snippet does;
//   - `keepalive`: an `upstream` block with `keepalive 64` and an empty Connection header for
//                  plain requests, so HTTP reuses upstream connections (as undici does for the
//                  gateway and @fastify/http-proxy). WebSockets behave the same in both.
// One change from nginx's defaults for both: `client_body_buffer_size 32k`, so that a 16 KiB
// POST body stays in memory (see the http block).
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { findBinary } from './util.mjs'

/** The nginx binary on PATH (or in /usr/sbin, often missing from a user's PATH), or null. */
export const findNginx = () => findBinary('nginx')

/** `nginx -v` text, e.g. "nginx/1.22.1". */
export function nginxVersion (bin) {
  try {
    const out = execFileSync(bin, ['-V'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    return out
  } catch (err) {
    return String(err.stderr ?? '')
  }
}

/**
 * Writes <dir>/nginx.conf. Returns its path.
 * @param {{ dir: string, bin: string, upstreamPort: number, port: number, portKeepalive: number, maxConns: number }} o
 */
export function writeNginxConfig (o) {
  const v = nginxVersion(o.bin)
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .filter((m) => m === 'client_body' || m === 'proxy' ? true : !v.includes(`--without-http_${m}_module`))
  for (const t of temp) mkdirSync(join(o.dir, `${t}_temp`), { recursive: true })
  const tempLines = temp.map((t) => `  ${t}_temp_path ${join(o.dir, `${t}_temp`)};`).join('\n')
  // Workers as root only when the master runs as root: then the temp dir stays writable for them.
  const user = process.getuid?.() === 0 ? 'user root;\n' : ''
  const location = (pass, connection) => `
    location / {
      proxy_pass ${pass};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection ${connection};
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
    }`
  const conf = `# Written by bench/run.mjs; started as: nginx -p ${o.dir} -c ${join(o.dir, 'nginx.conf')} -g 'daemon off;'
${user}worker_processes 1;
master_process on;
pid ${join(o.dir, 'nginx.pid')};
error_log ${join(o.dir, 'nginx-error.log')} warn;
worker_rlimit_nofile ${o.maxConns * 2 + 1024};

events {
  worker_connections ${o.maxConns * 2 + 512};
}

http {
  access_log off;
${tempLines}
  # The httpPost scenario's 16 KiB bodies in memory: the default (8k on x86-64) writes every
  # such body to a temp file first, and logs a warning for each.
  client_body_buffer_size 32k;

  # The classic WebSocket map: upgrade when asked, otherwise close the upstream connection.
  map $http_upgrade $connection_upgrade {
    default upgrade;
    ''      close;
  }
  # Keep-alive variant: no Connection header for plain requests, so the connection is reused.
  map $http_upgrade $connection_upgrade_keepalive {
    default upgrade;
    ''      '';
  }

  upstream echo_keepalive {
    server 127.0.0.1:${o.upstreamPort};
    keepalive 64;
  }

  server {
    listen 127.0.0.1:${o.port} backlog=4096;
${location(`http://127.0.0.1:${o.upstreamPort}`, '$connection_upgrade')}
  }

  server {
    listen 127.0.0.1:${o.portKeepalive} backlog=4096;
${location('http://echo_keepalive', '$connection_upgrade_keepalive')}
  }
}
`
  const path = join(o.dir, 'nginx.conf')
  writeFileSync(path, conf)
  return path
}
