/**
 * Incremental splitter for server-sent events. Feed it text as it arrives; it returns
 * each complete event (the text up to a blank line) and keeps the partial rest.
 *
 * Each piece of text is normalised and searched once, as it comes: an event spread over many
 * reads (a multi-megabyte image delta) is kept as its parts and joined once it is complete, where
 * joining and searching it from its start on every read cost time quadratic in its size.
 */
export class SseSplitter {
  /** The pending event's text, line breaks normalised, in the pieces it came in. */
  private parts: string[] = []
  /** A CR that ended the last piece: its LF may come with the next one, and the pair is one line break, not two. */
  private heldCr = false

  push(text: string): string[] {
    // Normalise CRLF only when present: most upstreams send bare LF.
    if (this.heldCr) {
      text = '\r' + text
      this.heldCr = false
    }
    if (text.includes('\r')) {
      if (text.endsWith('\r')) {
        this.heldCr = true
        text = text.slice(0, -1)
      }
      text = text.replace(/\r\n?/g, '\n')
    }
    const events: string[] = []
    let start = 0
    const parts = this.parts
    if (parts.length > 0) {
      // The blank line may straddle the pieces: the pending text ends a line, the new one starts with a break.
      const last = parts[parts.length - 1]!
      let end: number
      if (last.charCodeAt(last.length - 1) === 10 && text.charCodeAt(0) === 10) {
        parts[parts.length - 1] = last.slice(0, -1)
        end = 0
        start = 1
      } else {
        end = text.indexOf('\n\n')
        if (end === -1) {
          if (text) parts.push(text)
          return events
        }
        start = end + 2
      }
      parts.push(text.slice(0, end))
      events.push(parts.length === 2 ? parts[0]! + parts[1]! : parts.join(''))
      this.parts = []
    }
    for (;;) {
      const end = text.indexOf('\n\n', start)
      if (end === -1) break
      events.push(text.slice(start, end))
      start = end + 2
    }
    if (start < text.length) this.parts.push(start === 0 ? text : text.slice(start))
    return events
  }

  /** Whether part of an event waits for the rest of it. */
  get pending(): boolean {
    return this.parts.length > 0 || this.heldCr
  }

  /** Whatever is left when the stream ends without a final blank line. */
  flush(): string | null {
    let rest = this.parts.length === 1 ? this.parts[0]! : this.parts.join('')
    if (this.heldCr) rest += '\n'
    this.parts = []
    this.heldCr = false
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
