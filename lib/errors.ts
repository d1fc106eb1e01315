/**
 * One error type for everything multiplexer reports, with a stable code. Codes map to HTTP statuses
 * (front worker answers) and process exit codes (CLI) in one table each, so the mapping is testable.
 */
export type ErrorCode =
  | 'MPX_CONFIG_INVALID'
  | 'MPX_USAGE'
  | 'MPX_QUEUE_TIMEOUT'
  | 'MPX_QUEUE_FULL'
  | 'MPX_SHUTTING_DOWN'
  | 'MPX_BACKEND_UNREACHABLE'
  | 'MPX_BACKEND_CRASHED'
  | 'MPX_BACKEND_TIMEOUT'
  | 'MPX_BAD_BACKEND_RESPONSE'
  | 'MPX_BAD_REQUEST'
  | 'MPX_BODY_TOO_LARGE'
  | 'MPX_CLIENT_TIMEOUT'
  | 'MPX_BUFFER_FULL'
  | 'MPX_CLIENT_QUEUE_FULL'
  | 'MPX_NO_SERVICE'
  | 'MPX_UPGRADE_DISABLED'
  | 'MPX_LISTEN_FAILED'
  | 'MPX_STATE_DIR'
  | 'MPX_ALREADY_RUNNING'
  | 'MPX_NOT_RUNNING'
  | 'MPX_ADMIN_UNAVAILABLE'
  | 'MPX_INTERNAL';

export class MultiplexerError extends Error {
  readonly code: ErrorCode;
  /** For MPX_CONFIG_INVALID: one line per problem. */
  readonly problems: readonly string[];

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; problems?: string[] },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MultiplexerError';
    this.code = code;
    this.problems = options?.problems ?? [];
  }
}

export const httpStatusFor: Readonly<Record<ErrorCode, number>> = {
  MPX_CONFIG_INVALID: 500,
  MPX_USAGE: 500,
  MPX_QUEUE_TIMEOUT: 503,
  MPX_QUEUE_FULL: 503,
  MPX_SHUTTING_DOWN: 503,
  MPX_BACKEND_UNREACHABLE: 502,
  MPX_BACKEND_CRASHED: 502,
  MPX_BACKEND_TIMEOUT: 504,
  MPX_BAD_BACKEND_RESPONSE: 502,
  MPX_BAD_REQUEST: 400,
  MPX_BODY_TOO_LARGE: 413,
  MPX_CLIENT_TIMEOUT: 408,
  MPX_BUFFER_FULL: 503,
  MPX_CLIENT_QUEUE_FULL: 429,
  MPX_NO_SERVICE: 404,
  MPX_UPGRADE_DISABLED: 501,
  MPX_LISTEN_FAILED: 500,
  MPX_STATE_DIR: 500,
  MPX_ALREADY_RUNNING: 500,
  MPX_NOT_RUNNING: 500,
  MPX_ADMIN_UNAVAILABLE: 500,
  MPX_INTERNAL: 502,
};

/** sysexits.h: EX_USAGE 64, EX_UNAVAILABLE 69, EX_SOFTWARE 70, EX_CANTCREAT 73, EX_CONFIG 78. */
export const exitCodeFor: Readonly<Record<ErrorCode, number>> = {
  MPX_CONFIG_INVALID: 78,
  MPX_USAGE: 64,
  MPX_QUEUE_TIMEOUT: 70,
  MPX_QUEUE_FULL: 70,
  MPX_SHUTTING_DOWN: 70,
  MPX_BACKEND_UNREACHABLE: 70,
  MPX_BACKEND_CRASHED: 70,
  MPX_BACKEND_TIMEOUT: 70,
  MPX_BAD_BACKEND_RESPONSE: 70,
  MPX_BAD_REQUEST: 64,
  MPX_BODY_TOO_LARGE: 70,
  MPX_CLIENT_TIMEOUT: 70,
  MPX_BUFFER_FULL: 70,
  MPX_CLIENT_QUEUE_FULL: 70,
  MPX_NO_SERVICE: 70,
  MPX_UPGRADE_DISABLED: 70,
  MPX_LISTEN_FAILED: 70,
  MPX_STATE_DIR: 73,
  MPX_ALREADY_RUNNING: 70,
  MPX_NOT_RUNNING: 69,
  MPX_ADMIN_UNAVAILABLE: 69,
  MPX_INTERNAL: 70,
};
