import { isIP } from 'node:net'

/** Longest `X-Forwarded-For` entry looked at (an IPv6 address with a zone fits). */
const MAX_ADDRESS = 64

/**
 * The client's entry of an `X-Forwarded-For` value, when it is an IPv4 or IPv6 address (with its
 * zone, if any); null otherwise: not a port, brackets, a name or anything else. Without `proxies`,
 * its first entry (right only where the proxy overwrites the header: any client may write that
 * entry itself). With a number of proxies, the entry that many from the right: each proxy appends
 * the address it saw, so that one is what the outermost of them saw, whatever the client sent; a
 * value with fewer entries did not come through all of them, and gives none.
 */
export function forwardedAddress(header: string | null, proxies: number | null = null): string | null {
  if (!header) return null
  let entry: string
  if (proxies === null) {
    const comma = header.indexOf(',')
    entry = comma < 0 ? header : header.slice(0, comma)
  } else {
    // From the right, comma by comma: a long value a client wrote is not split whole.
    let end = header.length
    let start = header.lastIndexOf(',', end - 1) + 1
    for (let i = 1; i < proxies; i++) {
      if (start === 0) return null
      end = start - 1
      start = header.lastIndexOf(',', end - 1) + 1
    }
    entry = header.slice(start, end)
  }
  const address = entry.trim()
  // isIP takes an IPv6 zone made of a name or number (`fe80::1%eth0`) and nothing looser.
  return address.length <= MAX_ADDRESS && isIP(address) !== 0 ? address : null
}
