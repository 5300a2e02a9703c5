// uPlot behind a small component: daily bars that follow their container's width.
import { useEffect, useRef } from 'preact/hooks'
import { html } from 'htm/preact'
import uPlot from 'uplot'

const DAY = 86_400

/** Steps of a y axis of counts: 1, 2, 5, 10, 20, 50… (never half a request). */
const WHOLE_STEPS = Array.from({ length: 16 }, (_, i) => [1, 2, 5].map((m) => m * 10 ** i)).flat()

/**
 * A bar chart over time (one or two series). `x` is seconds since the epoch; each series is one bar per x.
 * `whole`: the values are counts (requests, tokens), so the y axis steps by whole numbers.
 * @param {{ title: string, x: number[], series: Array<{ label: string, values: number[], color: string }>, format?: (n: number) => string, whole?: boolean }} props
 */
export function TimeChart({ title, x, series, format = (n) => n.toLocaleString(), whole = false }) {
  const box = useRef(/** @type {HTMLDivElement | null} */ (null))
  useEffect(() => {
    const el = box.current
    if (!el || !x.length) return
    // One series: a bar centred on its day; two: side by side, left and right of the day.
    const aligns = series.length === 2 ? [-1, 1] : [0]
    const barsFor = (/** @type {number} */ i) => uPlot.paths.bars?.({ size: [series.length === 2 ? 0.35 : 0.6, 48], align: /** @type {-1 | 0 | 1} */ (aligns[i] ?? 0) })
    // Canvas strokes do not understand currentColor: take the text colour of the page's theme.
    const ink = getComputedStyle(el).color
    /** @type {uPlot.Options} */
    const options = {
      // Each x is a UTC day (the usage report's days): ticks and labels in UTC, or a browser west
      // of UTC would label a day's bar with the day before.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
      width: Math.max(240, el.clientWidth),
      height: 200,
      // Labels only: live values under the cursor add little for a few daily bars.
      legend: { show: true, live: false },
      cursor: { points: { show: false } },
      scales: {
        // One or two days still get room around their bars.
        x: { time: true, auto: false, range: [Math.min(...x) - DAY * 0.6, Math.max(...x) + DAY * 0.6] },
        y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [
        { stroke: ink, grid: { stroke: 'rgba(128,128,128,0.15)' }, ...(x.length <= 10 && { splits: () => x }), values: (_u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleDateString(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' })) },
        { stroke: ink, grid: { stroke: 'rgba(128,128,128,0.15)' }, size: 60, ...(whole && { incrs: WHOLE_STEPS }), values: (_u, ticks) => ticks.map((t) => format(t)) },
      ],
      series: [
        { label: 'Day', value: (_u, v) => (v === null ? '—' : new Date(v * 1000).toLocaleDateString(undefined, { timeZone: 'UTC' })) },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color,
          fill: s.color + 'cc',
          width: 1,
          paths: barsFor(i),
          points: { show: false },
          value: (/** @type {uPlot} */ _u, /** @type {number | null} */ v) => (v === null ? '—' : format(v)),
        })),
      ],
    }
    const plot = new uPlot(options, /** @type {uPlot.AlignedData} */ ([x, ...series.map((s) => s.values)]), el)
    const observer = new ResizeObserver(() => plot.setSize({ width: Math.max(240, el.clientWidth), height: 200 }))
    observer.observe(el)
    return () => {
      observer.disconnect()
      plot.destroy()
    }
  }, [x, series, whole])
  const summary = `${title}: ${series.map((s) => `${s.label} ${format(s.values.reduce((a, b) => a + (b || 0), 0))} in total`).join(', ')} over ${x.length} day${x.length === 1 ? '' : 's'}.`
  return html`<figure class="chart">
    <figcaption>${title}</figcaption>
    ${x.length ? html`<div ref=${box} role="img" aria-label=${summary}></div>` : html`<p class="empty">No data in this period.</p>`}
  </figure>`
}
