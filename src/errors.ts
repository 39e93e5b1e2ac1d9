/**
 * The one error type of Tern. Manager, agent and CLI throw TernError with a stable
 * machine-readable code; the HTTP layers map the code to a status and to the wire shape
 * `{error: {code, message, details}}`, and the CLI prints the message as one line.
 */
export type ErrorCode =
  | 'invalid_request'
  | 'unauthorized'
  | 'forbidden'
  | 'quota_exceeded'
  | 'not_found'
  | 'method_not_allowed'
  | 'conflict'
  | 'no_capacity'
  | 'locked'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'unavailable'
  | 'timeout'
  | 'cancelled'
  | 'guest_error'
  | 'hypervisor_error'
  | 'storage_error'
  /** The manager's own database cannot grow: its disk is full. */
  | 'manager_disk_full'
  | 'protocol_error'
  | 'internal';

const statusByCode: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  quota_exceeded: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  /** No host fits: a refusal of this request, not the manager being unavailable. */
  no_capacity: 409,
  locked: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unavailable: 503,
  timeout: 504,
  cancelled: 409,
  guest_error: 502,
  hypervisor_error: 500,
  storage_error: 500,
  manager_disk_full: 507,
  protocol_error: 502,
  internal: 500,
};

export class TernError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  /** `cause`: the error this one explains (a network error under `unavailable`), kept for logs. */
  constructor(
    code: ErrorCode,
    message: string,
    details?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TernError';
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return statusByCode[this.code];
  }

  toBody(): { error: { code: ErrorCode; message: string; details?: Record<string, unknown> } } {
    return {
      error: { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) },
    };
  }

  static isCode(value: unknown): value is ErrorCode {
    return typeof value === 'string' && value in statusByCode;
  }

  /** Rebuilds an error received over the wire (agent → manager, manager → CLI). */
  static fromBody(body: unknown, fallbackMessage: string): TernError {
    const e = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error;
    if (e && TernError.isCode(e.code) && typeof e.message === 'string') {
      const details =
        e.details && typeof e.details === 'object' ? (e.details as Record<string, unknown>) : undefined;
      return new TernError(e.code, e.message, details);
    }
    return new TernError('protocol_error', fallbackMessage);
  }
}

/**
 * What lies under a failed request, the one way to read it: fetch's bare "fetch failed" wraps
 * the error that says why (ECONNREFUSED, an untrusted certificate…); any other error is its own.
 */
export function rootCause(err: unknown): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  return e.cause instanceof Error ? e.cause : e;
}

/**
 * A peer that could not be reached (refused, silent, an untrusted certificate), the one way to
 * say so: `unavailable`, with `says(why)` naming the peer, `why` the first line of what lies
 * under, and the error kept as the cause. A TernError passes through: it already says why.
 */
export function unreachable(err: unknown, says: (why: string) => string): TernError {
  if (err instanceof TernError) return err;
  const why = rootCause(err).message.split('\n')[0] ?? '';
  return new TernError('unavailable', says(why), undefined, { cause: err });
}

/** Any thrown value as a TernError, keeping the message of unexpected errors for logs. */
export function asTernError(err: unknown): TernError {
  if (err instanceof TernError) return err;
  if (err instanceof Error && err.name === 'AbortError')
    return new TernError('cancelled', 'the operation was cancelled');
  return new TernError('internal', err instanceof Error ? err.message : String(err));
}
