import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'

/** One built file of the console, held in memory. */
export interface ConsoleAsset {
  readonly body: Uint8Array<ArrayBuffer>
  readonly type: string
  readonly etag: string
}

/** The console's page and its assets, built once per process. */
export interface ConsoleBundle {
  /** The HTML shell; it links the assets by their content-hashed names. */
  readonly html: string
  /** By file name under /console/assets/. */
  readonly assets: ReadonlyMap<string, ConsoleAsset>
}

const WEB = join(import.meta.dir, 'web')

let building: Promise<ConsoleBundle> | undefined

/**
 * Bundle the console into memory: preact, htm and uPlot from node_modules, no CDN, nothing
 * written to disk. One build per process (20–50 ms), shared by every gateway in it; a failed
 * build is retried by the next caller.
 */
export function consoleBundle(): Promise<ConsoleBundle> {
  building ??= build().catch((error: unknown) => {
    building = undefined
    throw error
  })
  return building
}

/**
 * The build runs in a child `bun build`, which prints the bundle: Bun's bundler keeps what it
 * allocated in the process that ran it (4–6 MB of RSS for the life of the gateway, measured at
 * boot), and a gateway that serves the console once an hour should not carry that.
 */
async function build(): Promise<ConsoleBundle> {
  const child = Bun.spawn(
    [process.execPath, 'build', join(WEB, 'main.js'), '--target=browser', '--format=esm', '--minify', '--define', 'process.env.NODE_ENV="production"'],
    // BUN_BE_BUN: a `bun build --compile`d gateway runs as the bun CLI for this one call.
    { cwd: WEB, env: { ...process.env, BUN_BE_BUN: '1' }, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' },
  )
  // A view of arrayBuffer()'s, not bytes(): both answer a Uint8Array of its own ArrayBuffer, but
  // without the DOM's types (a plugin author's project type-checks these sources too) bytes() is
  // typed as any Uint8Array, which a Response body may not be.
  const [code, buffer, stderr] = await Promise.all([child.exited, new Response(child.stdout).arrayBuffer(), new Response(child.stderr).text()])
  const js = new Uint8Array(buffer)
  if (code !== 0 || js.length === 0) throw new Error(`the console did not build (bun build exited with ${code}):\n${stderr.trim()}`)
  const uplotCss = join(dirname(require.resolve('uplot/package.json')), 'dist', 'uPlot.min.css')
  const css = (await readFile(uplotCss, 'utf8')) + '\n' + (await readFile(join(WEB, 'styles.css'), 'utf8'))
  const files = [asset('app', 'js', js, 'text/javascript; charset=utf-8'), asset('app', 'css', new TextEncoder().encode(css), 'text/css; charset=utf-8')]
  const [script, style] = files as [Named, Named]
  return { html: page(`/console/assets/${script.name}`, `/console/assets/${style.name}`), assets: new Map(files.map((f) => [f.name, f.asset])) }
}

type Named = { name: string; asset: ConsoleAsset }

function asset(base: string, ext: string, body: Uint8Array<ArrayBuffer>, type: string): Named {
  const hash = Bun.hash(body).toString(36)
  return { name: `${base}-${hash}.${ext}`, asset: { body, type, etag: `"${hash}"` } }
}

const page = (script: string, style: string) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>sluice console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${style}">
<script type="module" src="${script}"></script>
</head>
<body>
<div id="app"><p class="boot">Loading the sluice console…</p></div>
<noscript><p class="boot">The sluice console needs JavaScript. The same operations are available through the admin API (see /swagger).</p></noscript>
</body>
</html>`
