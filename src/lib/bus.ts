import type { Redis } from 'ioredis'
import type { RedisClient } from '../redis.ts'

/** Broadcast between gateway instances (key invalidation, health). Handlers must be cheap. */
export interface MessageBus {
  publish(channel: string, message: string): Promise<void>
  subscribe(channel: string, handler: (message: string) => void): Promise<void>
  close(): Promise<void>
}

/** One process: messages go straight to local handlers. */
export function createLocalBus(): MessageBus {
  const handlers = new Map<string, Set<(m: string) => void>>()
  return {
    async publish(channel, message) {
      for (const h of handlers.get(channel) ?? []) h(message)
    },
    async subscribe(channel, handler) {
      let set = handlers.get(channel)
      if (!set) handlers.set(channel, (set = new Set()))
      set.add(handler)
    },
    async close() {
      handlers.clear()
    },
  }
}

/**
 * Many processes over Redis pub/sub. The publishing instance also receives its own
 * message through Redis, so every instance takes the same code path.
 */
export function createRedisBus(client: RedisClient, prefix = 'sluice:'): MessageBus {
  // A second connection: one in subscriber mode can run no other command.
  const subscriber = (client as Redis).duplicate()
  const handlers = new Map<string, Set<(m: string) => void>>()
  subscriber.on('message', (channel: string, message: string) => {
    for (const h of handlers.get(channel.slice(prefix.length)) ?? []) h(message)
  })
  // Errors surface through the main client's listener; a lost connection reconnects by itself.
  subscriber.on('error', () => {})
  // Subscribe again to every channel whenever the connection becomes ready: this covers a Redis
  // that was down at boot (the first SUBSCRIBE failed) as well as reconnects.
  subscriber.on('ready', () => {
    if (handlers.size) void subscriber.subscribe(...[...handlers.keys()].map((c) => prefix + c)).catch(() => {})
  })
  return {
    async publish(channel, message) {
      await client.publish(prefix + channel, message)
    },
    async subscribe(channel, handler) {
      let set = handlers.get(channel)
      const first = !set
      if (!set) handlers.set(channel, (set = new Set()))
      set.add(handler)
      // With Redis away the subscription is made on the next 'ready'; the boot does not wait for Redis.
      if (first) await subscriber.subscribe(prefix + channel).catch(() => {})
    },
    async close() {
      handlers.clear()
      subscriber.disconnect()
    },
  }
}
