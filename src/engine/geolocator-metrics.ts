// /metrics for the geolocator stage (tracker/geolocator.ts): per node whether it
// runs and its crash restarts; in total the events fed, dropped (by reason) and
// the solutions written. Every series of a fixed label set starts at zero.
import type { Registry } from 'prom-client';
import { Counter, Gauge } from 'prom-client';
import { M } from '../telemetry/metric-names.js';
import { GEOLOCATOR_DROP_REASONS, type GeolocatorMetrics } from '../tracker/geolocator.js';

export function registerGeolocatorMetrics(reg: Registry[], get: () => GeolocatorMetrics | undefined): void {
  new Gauge({
    name: M.geolocatorUp, help: 'Per node: 1 while its tracker\'s geolocator runs with its input open.', labelNames: ['node'], registers: reg,
    collect() {
      this.reset();
      for (const [node, v] of get()?.up ?? []) this.set({ node }, v);
    },
  });
  new Counter({
    name: M.geolocatorRestarts, help: 'Per node: geolocator restarts after a crash or a failed start.', labelNames: ['node'], registers: reg,
    collect() {
      this.reset();
      for (const [node, v] of get()?.restarts ?? []) this.inc({ node }, v);
    },
  });
  new Counter({
    name: M.geolocatorEventsFed, help: 'Track events handed to a geolocator\'s input.', registers: reg,
    collect() {
      this.reset();
      this.inc(get()?.fed ?? 0);
    },
  });
  new Counter({
    name: M.geolocatorEventsDropped,
    help: 'Track events that did not reach a geolocator, by reason (queue_full: oldest dropped from a full queue; not_running: no geolocator to take them; lost: with a geolocator that died; shutdown: queued at shutdown).',
    labelNames: ['reason'], registers: reg,
    collect() {
      this.reset();
      const m = get();
      for (const r of GEOLOCATOR_DROP_REASONS) this.inc({ reason: r }, m?.dropped[r] ?? 0);
    },
  });
  new Counter({
    name: M.geolocatorSolutionsWritten, help: 'Geolocator solution lines written to solutions files.', registers: reg,
    collect() {
      this.reset();
      this.inc(get()?.solutions ?? 0);
    },
  });
}
