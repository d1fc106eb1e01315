import type { PortRange } from './formats.js';

/** The validated, frozen configuration the primary hands to every part (and to front workers). */
export interface Config {
  readonly pool_size: number;
  readonly pool_max_overflow: number;
  readonly pool_strategy: 'fifo' | 'lifo';
  readonly http_port: number;
  readonly http_host: string;
  readonly http_proxy_timeout: number;
  readonly buffer_requests: boolean;
  readonly buffer_responses: boolean;
  readonly buffer_memory_bytes: number;
  readonly client_max_body_bytes: number;
  readonly client_timeout_ms: number;
  readonly websocket: boolean;
  readonly access_log: boolean;
  readonly admin_hostnames: readonly string[];
  readonly trusted_proxies: readonly string[];
  readonly service_http_base_url: string;
  readonly service_port_range: PortRange;
  readonly service_start_process_cmd: string;
  readonly service_start_delay_ms: number | 'wait_first_output' | 'wait_port';
  readonly service_start_timeout_ms: number;
  readonly service_health_path: string;
  readonly service_health_interval_ms: number;
  readonly service_boot_attempts: number;
  readonly service_max_requests: number;
  readonly service_max_requests_jitter: number;
  readonly service_max_rss_mb: number;
  readonly service_stop_timeout_ms: number;
  readonly service_kill_pattern: string;
  readonly workers: number;
  readonly queue_timeout_ms: number;
  readonly queue_max: number;
  readonly shutdown_timeout_ms: number;
  readonly admin_host: string;
  readonly admin_port: number;
  readonly admin_token: string;
}

export type Source = 'flag' | 'env' | 'file' | 'default';

export interface LoadedConfig {
  config: Config;
  /** Where each key's value came from, for `multiplexer check`. */
  sources: Readonly<Record<keyof Config, Source>>;
  file: string;
}

/** The host part of service_http_base_url, as a socket address (an IPv6 literal without brackets). */
export function backendHost(baseUrl: string): string {
  return new URL(baseUrl).hostname.replace(/^\[|\]$/g, '');
}
