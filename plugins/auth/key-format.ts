import { randomBase62 } from '../../src/lib/id.ts'
import { ENV_SLUG } from '../../src/config/schema.ts'

/** Characters of secret after `sk-<env>-`: 43 base62 characters carry 256 bits. */
export const SECRET_LENGTH = 43

/** A freshly minted key: the plaintext (shown once) and what is stored. */
export interface MintedKey {
  plaintext: string
  hash: string
  start: string
  end: string
}

/** SHA-256 hex of the whole key: the only form a key is stored in. */
export const hashKey = (key: string): string => Bun.SHA256.hash(key, 'hex')

/** Mint `sk-<env>-<secret>` from the CSPRNG. */
export function mintKey(environment: string): MintedKey {
  if (!ENV_SLUG.test(environment)) throw new Error(`"${environment}" is not an environment slug`)
  const plaintext = `sk-${environment}-${randomBase62(SECRET_LENGTH)}`
  return { plaintext, hash: hashKey(plaintext), start: plaintext.slice(0, 12), end: plaintext.slice(-4) }
}

export { displayKey, echo, keyEnvironment, maskKey, maskKeysIn } from '../../src/lib/key-text.ts'
