/**
 * Incremental splitter for server-sent events. Feed it text as it arrives; it returns
 * each complete event (the text up to a blank line) and keeps the partial rest.
 */
export class SseSplitter {
  private rest = ''

  push(text: string): string[] {
    let buf = this.rest + text
    // Normalise CRLF only when present: most upstreams send bare LF. A CR at the very end waits:
    // its LF may come with the next read, and the pair is one line break, not two.
    let heldCr = false
    if (buf.includes('\r')) {
      if (buf.endsWith('\r')) {
        heldCr = true
        buf = buf.slice(0, -1)
      }
      buf = buf.replace(/\r\n?/g, '\n')
    }
    const events: string[] = []
    let start = 0
    for (;;) {
      const end = buf.indexOf('\n\n', start)
      if (end === -1) break
      events.push(buf.slice(start, end))
      start = end + 2
    }
    this.rest = heldCr ? buf.slice(start) + '\r' : buf.slice(start)
    return events
  }

  /** Whether part of an event waits for the rest of it. */
  get pending(): boolean {
    return this.rest.length > 0
  }

  /** Whatever is left when the stream ends without a final blank line. */
  flush(): string | null {
    const rest = this.rest.replace(/\r\n?/g, '\n')
    this.rest = ''
    return rest.trim() ? rest : null
  }
}

/** The joined `data:` lines of one event, or null when it has none (comments, keep-alives). */
export function eventData(event: string): string | null {
  // The common case, one `data: …` line, without splitting.
  if (event.startsWith('data: ') && !event.includes('\n')) return event.slice(6)
  let data: string | null = null
  for (const line of event.split('\n')) {
    if (!line.startsWith('data:')) continue
    const value = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5)
    data = data === null ? value : data + '\n' + value
  }
  return data
}
