/** This process's id in listings, metrics and the cluster bus: host, pid and 6 random hex digits. */
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'

export function newInstanceId (): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`
}
