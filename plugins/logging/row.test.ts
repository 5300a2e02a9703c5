import { describe, expect, test } from 'bun:test'
import { forwardedAddress } from '../../src/lib/forwarded.ts'
import { isoTime } from './row.ts'

describe('isoTime', () => {
  test('matches Date#toISOString, across seconds and for fractional times', () => {
    const base = Date.parse('2026-03-01T23:59:58.000Z')
    for (const ms of [0, 1, 9, 10, 99, 100, 999, 1000, 1001, 1999.7, 2000, 2000.2, 61_234]) {
      expect(isoTime(base + ms)).toBe(new Date(base + ms).toISOString())
    }
    expect(isoTime(0)).toBe('1970-01-01T00:00:00.000Z')
  })
})

describe('forwardedAddress', () => {
  test('the first X-Forwarded-For entry when it is an IPv4 or IPv6 address', () => {
    expect(forwardedAddress('203.0.113.7')).toBe('203.0.113.7')
    expect(forwardedAddress(' 203.0.113.7 , 10.0.0.1')).toBe('203.0.113.7')
    expect(forwardedAddress('2001:db8::1, 10.0.0.1')).toBe('2001:db8::1')
    expect(forwardedAddress('::ffff:192.0.2.1')).toBe('::ffff:192.0.2.1')
    expect(forwardedAddress('fe80::1%eth0')).toBe('fe80::1%eth0')
  })

  test('an entry with a port or in brackets (as Azure Application Gateway and IIS write it) is its address', () => {
    expect(forwardedAddress('203.0.113.7:51234, 10.0.0.1')).toBe('203.0.113.7')
    expect(forwardedAddress('[2001:db8::1]')).toBe('2001:db8::1')
    expect(forwardedAddress('[2001:db8::1]:443')).toBe('2001:db8::1')
    expect(forwardedAddress('6.6.6.6, 198.51.100.4:8080', 1)).toBe('198.51.100.4')
  })

  test('anything else is no address: hex words, bare colons, bad ports or brackets, names, zones on IPv4', () => {
    for (const value of ['cafe', 'beef:cafe', '::::', ':', '1.2.3.4:', '1.2.3.4:123456', '1.2.3.4:x', 'example.com:80', '[1.2.3.4]', '[2001:db8::1', '[2001:db8::1]x', '[2001:db8::1]:', '256.1.1.1', '1.2.3', 'example.com', 'unknown', '1.2.3.4%eth0', 'fe80::1%', 'fe80::1%<x>', '<script>alert(1)</script>', '', ' , 1.2.3.4']) {
      expect([value, forwardedAddress(value)]).toEqual([value, null])
    }
    expect(forwardedAddress(null)).toBeNull()
    expect(forwardedAddress(`2001:db8::1%${'x'.repeat(80)}`)).toBeNull()
  })

  test('with a number of proxies, the entry that many from the right: the address the outermost of them saw, whatever the client wrote before it', () => {
    expect(forwardedAddress('6.6.6.6, 198.51.100.4', 1)).toBe('198.51.100.4')
    expect(forwardedAddress('198.51.100.4', 1)).toBe('198.51.100.4')
    expect(forwardedAddress('6.6.6.6,203.0.113.9 , 10.0.0.1', 2)).toBe('203.0.113.9')
    expect(forwardedAddress('2001:db8::7, 10.0.0.1', 2)).toBe('2001:db8::7')
    // Fewer entries than proxies (the request did not come through all of them), or no address there: none.
    expect(forwardedAddress('203.0.113.9', 2)).toBeNull()
    expect(forwardedAddress('203.0.113.9, unknown', 1)).toBeNull()
    expect(forwardedAddress('', 1)).toBeNull()
    expect(forwardedAddress(null, 1)).toBeNull()
  })
})
