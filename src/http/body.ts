/** Reading a body that comes from the network, with a bound. */

/**
 * The bytes of `body` if there are at most `limit` of them; null as soon as there are more
 * (leaving the loop ends the stream: the rest is never read).
 */
export async function readAtMost (body: AsyncIterable<Uint8Array>, limit: number): Promise<Buffer | null> {
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.byteLength
    if (size > limit) return null
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}
