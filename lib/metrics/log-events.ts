import { Counter, type Registry } from 'prom-client';
import { loggedEvents } from '../log.js';

/** multiplexer_log_events_total{event}: the log's event names, counted in each process. */
export function countLogEvents(registry: Registry): void {
  new Counter({
    name: 'multiplexer_log_events_total',
    help: 'Log lines by event name (backend.ready, backend.crashed, reload.done, request.rejected, …), at the levels logged.',
    labelNames: ['event'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [event, n] of loggedEvents()) this.inc({ event }, n);
    },
  });
}
