/**
 * Key names of cluster mode. Everything the registry and the concurrent-connection limit keep
 * in Redis carries one hash tag per gateway cluster, `{<keyPrefix>reg}`, so that on Redis
 * Cluster all of it lives in one slot: the Lua scripts that reap a dead instance (registry keys
 * and concurrency counts together) and the multi-key transactions stay legal there. The price:
 * that share of the traffic goes to one master of the Redis Cluster (it is small: opens, closes
 * and heartbeats; nothing per message). Lifecycle event streams (src/events/redis-queue.ts) and
 * rate-limit windows have tags or keys of their own and spread over the slots.
 */

/** The start of every registry and concurrency key of the cluster named by `prefix`. */
export function clusterKeyBase (prefix: string): string {
  return `${prefix}{${prefix}reg}:`
}
