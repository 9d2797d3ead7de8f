/** The one error shape Conduit speaks: OpenAI's `{"error":{message,type,param,code}}`. */
export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null }
}

export interface GatewayErrorOptions {
  type?: string
  code?: string | null
  param?: string | null
  headers?: Record<string, string>
}

const defaultType = (status: number): string => {
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 429) return 'rate_limit_error'
  if (status >= 500) return 'server_error'
  return 'invalid_request_error'
}

/** Throw from any hook or adapter to end the request with an OpenAI-style error. */
export class GatewayError extends Error {
  readonly status: number
  readonly type: string
  readonly code: string | null
  readonly param: string | null
  readonly headers: Record<string, string>

  constructor(status: number, message: string, options: GatewayErrorOptions = {}) {
    super(message)
    this.name = 'GatewayError'
    this.status = status
    this.type = options.type ?? defaultType(status)
    this.code = options.code ?? null
    this.param = options.param ?? null
    this.headers = options.headers ?? {}
  }

  toJSON(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } }
  }

  /** Plugins loaded from disk may carry their own copy of the SDK: recognise errors by shape, not class. */
  static is(value: unknown): value is GatewayError {
    return (
      value instanceof GatewayError ||
      (value instanceof Error && value.name === 'GatewayError' && typeof (value as GatewayError).status === 'number')
    )
  }
}

/**
 * An error whose message says where `error` happened (`Config file x.yaml is not valid YAML: …`): a start-up
 * failure is one line for the operator, and the original stays as its cause.
 */
export const inContext = (where: string, error: unknown) => new Error(`${where}: ${error instanceof Error ? error.message : String(error)}`, { cause: error })

export const badRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new GatewayError(400, message, { param, code })
