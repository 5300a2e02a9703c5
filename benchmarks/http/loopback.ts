/**
 * Preload for servers the suite runs but does not control (the Portkey peer listens on every
 * interface): binds a `node:http` server to 127.0.0.1 when it is given a port and no host, so
 * every benchmark stays on loopback.
 *
 *   bun --preload ./benchmarks/http/loopback.ts <server.js>
 */
import http from 'node:http'

const listen = http.Server.prototype.listen
http.Server.prototype.listen = function (this: http.Server, ...args: unknown[]) {
  if (typeof args[0] === 'number') {
    if (args[1] === undefined || args[1] === null) args[1] = '127.0.0.1'
    else if (typeof args[1] === 'function') args.splice(1, 0, '127.0.0.1')
  }
  return listen.apply(this, args as Parameters<typeof listen>)
} as typeof listen
