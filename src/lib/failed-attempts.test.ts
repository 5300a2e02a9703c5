import { describe, expect, test } from 'bun:test'
import { FailedAttempts, clientKey } from './failed-attempts.ts'

describe('FailedAttempts', () => {
  test('a client with a full bucket again is forgotten, so the map empties', () => {
    let now = 0
    const failures = new FailedAttempts({ perMinute: 2, now: () => now })
    failures.fail('a')
    failures.fail('a')
    expect(failures.retryAfterMs('a')).toBe(30_000)
    expect(failures.retryAfterMs('b')).toBe(0)
    now += 60_000
    expect(failures.retryAfterMs('a')).toBe(0)
    expect(failures.size).toBe(0)
  })

  test('bounded: past maxClients the client that failed longest ago is forgotten', () => {
    const failures = new FailedAttempts({ perMinute: 1, maxClients: 2, now: () => 0 })
    failures.fail('a')
    failures.fail('b')
    failures.fail('a')
    failures.fail('c')
    expect(failures.size).toBe(2)
    expect(failures.retryAfterMs('b')).toBe(0)
    expect(failures.retryAfterMs('a')).toBeGreaterThan(0)
    expect(failures.retryAfterMs('c')).toBeGreaterThan(0)
  })
})

describe('clientKey', () => {
  test('IPv4 as it is, IPv4-mapped IPv6 as its IPv4, IPv6 by its /64, nothing as null', () => {
    expect(clientKey('192.0.2.7')).toBe('192.0.2.7')
    expect(clientKey('::ffff:192.0.2.7')).toBe('192.0.2.7')
    expect(clientKey('2001:db8:0:1:aaaa::1')).toBe('2001:db8:0:1::/64')
    expect(clientKey('2001:DB8:0000:0001:bbbb:cccc:dddd:eeee')).toBe('2001:db8:0:1::/64')
    expect(clientKey('2001:db8::1')).toBe('2001:db8:0:0::/64')
    expect(clientKey('::1')).toBe('0:0:0:0::/64')
    expect(clientKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64')
    expect(clientKey(null)).toBeNull()
    expect(clientKey('')).toBeNull()
  })

  test('an IPv4-mapped address in any spelling is its IPv4 client, and an IPv4 tail is two groups', () => {
    // Not one ::/64 that every IPv4 client so written would share (one guesser locking out all of them).
    expect(clientKey('0:0:0:0:0:ffff:192.0.2.7')).toBe('192.0.2.7')
    expect(clientKey('::ffff:c000:207')).toBe('192.0.2.7')
    expect(clientKey('0:0:0:0:0:FFFF:C000:0207')).toBe('192.0.2.7')
    expect(clientKey('::ffff:c000:208')).toBe('192.0.2.8')
    // A dotted tail fills the last two groups: the /64 is 1:2:0:4, not 1:2:0:0.
    expect(clientKey('1:2::4:5:6:192.0.2.7')).toBe('1:2:0:4::/64')
    expect(clientKey('1:2:3:4:5:6:192.0.2.7')).toBe('1:2:3:4::/64')
    expect(clientKey('::192.0.2.7')).toBe('0:0:0:0::/64')
  })
})
