/**
 * A TCP relay on 127.0.0.1 in front of one server (a Redis of a test's own), which a test can cut
 * and restore: one instance loses its connection while the others, connected straight to the
 * server, keep theirs (a network cut between one host and Redis).
 */
import type { Socket, TCPSocketListener } from 'bun'

export interface TcpProxy {
  /** The port clients connect to. */
  readonly port: number
  /** Close every relayed connection and stop listening: connections are refused until `restore`. */
  cut(): void
  /** Listen again on the same port. */
  restore(): void
  /**
   * Stop relaying on the connections open now, in both directions, without closing them (a peer
   * gone without a word, a firewall or NAT that dropped the connection): what is sent on them goes
   * nowhere and nothing comes back. New connections are relayed as before.
   */
  stall(): void
  /** Cut, for good. */
  stop(): void
}

/** One side of a relayed connection: its peer (once connected) and what waits to be written to it. */
interface Side {
  peer: Socket<Side> | null
  /** Bytes for this side's socket not yet taken by it (written on drain). */
  backlog: Uint8Array[]
  /** Bytes for the peer that came before the peer connected. */
  early: Uint8Array[]
}

const newSide = (): Side => ({ peer: null, backlog: [], early: [] })

function send(socket: Socket<Side>, bytes: Uint8Array): void {
  if (socket.data.backlog.length > 0) {
    socket.data.backlog.push(bytes)
    return
  }
  const written = socket.write(bytes)
  if (written < bytes.byteLength) socket.data.backlog.push(bytes.subarray(Math.max(written, 0)))
}

function flush(socket: Socket<Side>): void {
  while (socket.data.backlog.length > 0) {
    const bytes = socket.data.backlog[0]!
    const written = socket.write(bytes)
    if (written < bytes.byteLength) {
      socket.data.backlog[0] = bytes.subarray(Math.max(written, 0))
      return
    }
    socket.data.backlog.shift()
  }
}

/** Relay `127.0.0.1:<free port>` to `127.0.0.1:targetPort`. */
export function startTcpProxy(targetPort: number): TcpProxy {
  const open = new Set<Socket<Side>>()
  const stalled = new WeakSet<Socket<Side>>()
  const closeBoth = (socket: Socket<Side>) => {
    open.delete(socket)
    const peer = socket.data.peer
    socket.data.peer = null
    if (peer) {
      peer.data.peer = null
      open.delete(peer)
      peer.end()
    }
  }
  const handlers = {
    data(socket: Socket<Side>, bytes: Buffer) {
      if (stalled.has(socket)) return
      const copy = new Uint8Array(bytes)
      if (socket.data.peer) send(socket.data.peer, copy)
      else socket.data.early.push(copy)
    },
    drain: flush,
    close: closeBoth,
    error: closeBoth,
  }
  const listen = (port: number): TCPSocketListener<Side> =>
    Bun.listen<Side>({
      hostname: '127.0.0.1',
      port,
      socket: {
        ...handlers,
        open(client) {
          client.data = newSide()
          open.add(client)
          Bun.connect<Side>({ hostname: '127.0.0.1', port: targetPort, data: newSide(), socket: handlers }).then(
            (server) => {
              if (!open.has(client)) {
                server.end()
                return
              }
              open.add(server)
              server.data.peer = client
              client.data.peer = server
              for (const bytes of client.data.early.splice(0)) send(server, bytes)
            },
            () => closeBoth(client),
          )
        },
      },
    })
  let listener: TCPSocketListener<Side> | null = listen(0)
  const port = listener.port
  const cut = () => {
    listener?.stop(true)
    listener = null
    for (const socket of [...open]) {
      open.delete(socket)
      socket.end()
    }
  }
  return {
    port,
    cut,
    restore() {
      listener ??= listen(port)
    },
    stall() {
      for (const socket of open) stalled.add(socket)
    },
    stop: cut,
  }
}
