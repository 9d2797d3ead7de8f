/**
 * Whom a request is for, as the client names them: `user`, or `safety_identifier` (OpenAI's replacement for it) when
 * `user` is absent. Per-user limits, the ledger and the request records go by it. Null when neither is a non-empty string.
 */
export function endUserOf(body: Record<string, any> | null | undefined): { field: 'user' | 'safety_identifier'; value: string } | null {
  if (typeof body?.user === 'string' && body.user !== '') return { field: 'user', value: body.user }
  if (typeof body?.safety_identifier === 'string' && body.safety_identifier !== '') return { field: 'safety_identifier', value: body.safety_identifier }
  return null
}
