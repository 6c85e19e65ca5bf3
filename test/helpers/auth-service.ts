/**
 * A real auth service for external-authorization tests: an HTTP server on 127.0.0.1:0 whose
 * answer a test decides per request, recording every question it was asked.
 */
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export interface AuthAnswer {
  status: number
  headers?: OutgoingHttpHeaders
  body?: string | Buffer
  /** Never answer (the gateway's timeout is what ends it). */
  hang?: boolean
  /** Answer by hand (a partial body, a reset...). */
  custom?: (res: ServerResponse) => void
}

export interface AuthService {
  url: string
  /** Every request the service got, oldest first. */
  asked: IncomingMessage[]
  /** How the next requests are answered (default: 200, no headers). */
  answer: (req: IncomingMessage) => AuthAnswer
  close (): Promise<void>
}

export async function startAuthService (answer: AuthService['answer'] = () => ({ status: 200 })): Promise<AuthService> {
  const sockets = new Set<Socket>()
  const svc: AuthService = {
    url: '',
    asked: [],
    answer,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy()
      server.close(() => resolve())
    })
  }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    svc.asked.push(req)
    req.resume()
    const a = svc.answer(req)
    if (a.hang === true) return
    if (a.custom !== undefined) { a.custom(res); return }
    res.writeHead(a.status, a.headers)
    res.end(a.body)
  })
  server.on('connection', (s: Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  svc.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/check`
  return svc
}

/** startAuthService, closed after the test. */
export async function authServiceFor (t: { after: (fn: () => Promise<void>) => void }, answer?: AuthService['answer']): Promise<AuthService> {
  const svc = await startAuthService(answer)
  t.after(() => svc.close())
  return svc
}
