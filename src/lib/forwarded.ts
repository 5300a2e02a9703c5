import { isIP } from 'node:net'

/** Longest `X-Forwarded-For` entry looked at (an IPv6 address with a zone fits). */
const MAX_ADDRESS = 64

/**
 * The client's entry of an `X-Forwarded-For` value, when it is an IPv4 or IPv6 address (with its
 * zone, if any; a port or brackets around it are taken off); null otherwise: a name or anything else. Without `proxies`,
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
  return bareAddress(entry.trim())
}

/**
 * An entry's address without the port or brackets some proxies write (Azure's Application Gateway
 * and IIS append `203.0.113.7:51234`, others `[2001:db8::1]:443`); null when it is no address.
 * isIP takes an IPv6 zone made of a name or number (`fe80::1%eth0`) and nothing looser.
 */
function bareAddress(entry: string): string | null {
  if (entry.length > MAX_ADDRESS + 8) return null
  let address = entry
  if (address.startsWith('[')) {
    const close = address.indexOf(']')
    // `[v6]` or `[v6]:port`, and only IPv6 within.
    if (close < 0 || (close + 1 < address.length && !isPort(address.slice(close + 1)))) return null
    address = address.slice(1, close)
    return address.length <= MAX_ADDRESS && isIP(address) === 6 ? address : null
  }
  const colon = address.indexOf(':')
  // One colon: IPv4 and a port (an IPv6 address has at least two).
  if (colon > 0 && address.indexOf(':', colon + 1) < 0) {
    if (!isPort(address.slice(colon))) return null
    address = address.slice(0, colon)
    return isIP(address) === 4 ? address : null
  }
  return address.length <= MAX_ADDRESS && isIP(address) !== 0 ? address : null
}

/** `:` and a port number (1 to 5 digits). */
const isPort = (text: string): boolean => /^:\d{1,5}$/.test(text)
