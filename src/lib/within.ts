/**
 * `pending`, or a rejection with what `late()` returns once `ms` have passed without it settling.
 * The timer goes as soon as `pending` settles, so a call that answers leaves nothing behind; what
 * `pending` does after the deadline is the caller's to watch (keep the promise to see it).
 */
/** Waits for `pending` at most `ms`, whatever it ends in; the timer goes with the wait. */
export const waitAtMost = (pending: Promise<unknown>, ms: number): Promise<void> =>
  within(pending, ms, () => null).then(
    () => {},
    () => {},
  )

export function within<T>(pending: Promise<T>, ms: number, late: () => unknown): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(late()), ms)
    pending.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })
}
