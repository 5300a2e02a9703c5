import type { PluginFactory } from '../src/plugin.ts'
import { auth } from './auth/index.ts'
import { quota } from './quota/index.ts'
import { tokens } from './tokens/index.ts'
import { balance } from './balance/index.ts'
import { logging } from './logging/index.ts'

/**
 * The built-in plugins by the name a config lists them with. A config without a
 * `plugins` list gets all of them, in this order.
 */
export const BUILTIN_PLUGINS: Record<string, PluginFactory> = {
  auth: auth as unknown as PluginFactory,
  tokens: tokens as unknown as PluginFactory,
  quota: quota as unknown as PluginFactory,
  balance: balance as unknown as PluginFactory,
  // Last: its onComplete sees what every other plugin recorded, and it closes first, while the database is still open.
  logging: logging as unknown as PluginFactory,
}
