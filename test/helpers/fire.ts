/**
 * `total` requests sent by `clients` concurrent clients, each taking the next number: `send(i)` makes request i
 * (spreading it over instances as the test likes). Their statuses, in the order they finished.
 */
export async function fire(total: number, clients: number, send: (i: number) => Promise<Response>): Promise<number[]> {
  const statuses: number[] = []
  let next = 0
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < total) {
        const res = await send(next++)
        statuses.push(res.status)
        await res.body?.cancel()
      }
    }),
  )
  return statuses
}
