/**
 * Prometheus metrics for this gateway (a registry of its own, so several gateways can live in
 * one process), kept across hot reloads. Served by routes/ops/metrics.ts.
 */
import fp from 'fastify-plugin'
import type { GatewayMetrics } from '../src/metrics/gateway-metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway's metrics: counters to record events, and the Prometheus registry. */
    metrics: GatewayMetrics
  }
}

export default fp<{ metrics: GatewayMetrics }>(async function metricsPlugin (fastify, opts) {
  fastify.decorate('metrics', opts.metrics)
}, { name: 'tollgate-metrics', fastify: '5.x' })
