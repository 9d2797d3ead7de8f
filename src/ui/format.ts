/** How the console writes money, durations, counts and times. */

export const usd = (value: string | number | null | undefined) => {
  if (value === null || value === undefined) return '—'
  const n = Number(value)
  // To the micro-dollar the ledger keeps, without zeros past the cents: $0.0149, $5.125, $12.50 (not $0.01, $5.13).
  return n === 0 ? '$0' : `$${n.toFixed(6).replace(/(\.\d\d\d*?)0+$/, '$1')}`
}
export const ms = (value: number | null | undefined) => (value === null || value === undefined ? '—' : value < 1000 ? `${Math.round(value)} ms` : `${(value / 1000).toFixed(2)} s`)
export const count = (value: number | null | undefined) => (value === null || value === undefined ? '—' : value.toLocaleString('en-US'))
export const pct = (value: number) => `${(value * 100).toFixed(value > 0 && value < 0.01 ? 2 : 1)}%`
export const dateTime = (unixSeconds: number | null | undefined) =>
  unixSeconds === null || unixSeconds === undefined ? '—' : new Date(unixSeconds * 1000).toLocaleString('en-GB', { dateStyle: 'short', timeStyle: 'medium' })
