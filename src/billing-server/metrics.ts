/**
 * Prometheus metrics of one billing server, in its own prom-client Registry
 * (never the global one, so several servers in one process do not collide):
 * orders credited and rejected by reason, deposit and request latency.
 */
import { Counter, Histogram, Registry } from 'prom-client';

/** The metrics a server records. */
export interface Metrics {
  registry: Registry;
  ordersCredited: Counter<string>;
  ordersDuplicate: Counter<string>;
  ordersRejected: Counter<'reason'>;
  authorizations: Counter<'status'>;
  depositSeconds: Histogram<string>;
  requestSeconds: Histogram<'method' | 'route' | 'status'>;
}

export function createMetrics(issuer: string): Metrics {
  const registry = new Registry();
  registry.setDefaultLabels({ issuer });
  return {
    registry,
    ordersCredited: new Counter({
      name: 'micropay_orders_credited_total',
      help: 'Orders credited by deposits.',
      registers: [registry],
    }),
    ordersDuplicate: new Counter({
      name: 'micropay_orders_duplicate_total',
      help: 'Deposited orders that were already credited.',
      registers: [registry],
    }),
    ordersRejected: new Counter({
      name: 'micropay_orders_rejected_total',
      help: 'Deposited orders rejected, by reason.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    authorizations: new Counter({
      name: 'micropay_authorizations_total',
      help: 'Online authorizations, by answer.',
      labelNames: ['status'],
      registers: [registry],
    }),
    depositSeconds: new Histogram({
      name: 'micropay_deposit_duration_seconds',
      help: 'Time to verify and commit one deposit batch.',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    requestSeconds: new Histogram({
      name: 'micropay_http_request_duration_seconds',
      help: 'HTTP request latency by route.',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
  };
}
