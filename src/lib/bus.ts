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
  // A subscriber connection that drops and reconnects resubscribes by itself (ioredis autoResubscribe).
  subscriber.on('error', () => {})
  return {
    async publish(channel, message) {
      await client.publish(prefix + channel, message)
    },
    async subscribe(channel, handler) {
      let set = handlers.get(channel)
      const first = !set
      if (!set) handlers.set(channel, (set = new Set()))
      set.add(handler)
      if (first) await subscriber.subscribe(prefix + channel)
    },
    async close() {
      handlers.clear()
      subscriber.disconnect()
    },
  }
}
