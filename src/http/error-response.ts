import type { GatewayError } from '../plugin-sdk/errors.ts'

/** A GatewayError as the HTTP edge answers it: OpenAI's envelope, its status and headers. */
export const errorResponse = (error: GatewayError) =>
  new Response(JSON.stringify(error.toJSON()), { status: error.status, headers: { 'content-type': 'application/json', ...error.headers } })
