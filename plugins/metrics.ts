/**
 * Prometheus metrics for this gateway (a registry of its own, so several gateways can live in
 * one process). Served by routes/metrics.ts.
 */
import fp from 'fastify-plugin'
import type { GatewayMetrics } from '../src/metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway's metrics: counters to record events, and the Prometheus registry. */
    metrics: GatewayMetrics
  }
}

export default fp(async function metricsPlugin (fastify) {
  fastify.decorate('metrics', fastify.shared.metrics)
}, { name: 'tollgate-metrics', fastify: '5.x', dependencies: ['tollgate-registry'] })
