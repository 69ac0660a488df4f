// Several hosts: the agent registry and the commands of the whole fleet, in Redis.
// Wires the fleet store into the agent service, counts what it does, and logs each
// Redis outage once (registry and commands are this host's meanwhile); when Redis
// is back, this host's agents and streams are written back.
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../telemetry/logger.js';
import type { ClusterConfig, Config } from '../config.js';
import { CLUSTER_M } from '../telemetry/metric-names.js';
import { RedisFleetStore } from '../agents/fleet-store-redis.js';
import type { AgentService } from '../agents/agent-service.js';
import { ROUTE_RESULTS, type FleetPlane } from '../agents/fleet-plane.js';

export class ClusterAgents {
  readonly store: RedisFleetStore;
  private outageSince: number | null = null;

  constructor(cluster: ClusterConfig, config: Config, agents: AgentService, reg: Registry, private readonly log: Logger) {
    const routed = new Counter({
      name: CLUSTER_M.commandsRouted, labelNames: ['result'], registers: [reg],
      help: 'Commands created on this host, by where they went: local (stream here), published (to the host holding the stream), no_listener (that host did not hear), no_stream (no stream open: stays PENDING), error.',
    });
    for (const r of ROUTE_RESULTS) routed.inc({ result: r }, 0);
    const local = new Counter({
      name: CLUSTER_M.agentRequestsLocal, registers: [reg],
      help: 'Agent API requests served from this host\'s memory because Redis was unreachable.',
    });
    const invalid = new Counter({
      name: CLUSTER_M.agentMessagesInvalid, registers: [reg],
      help: 'Messages on this host\'s agent channel that were not valid (dropped).',
    });
    let errorsLogged = 0;
    let plane: FleetPlane | null = null; // attached right below; Redis is not connected before start()
    this.store = new RedisFleetStore({
      redisUrl: cluster.redis_url,
      hostId: cluster.host_id,
      keyPrefix: cluster.key_prefix,
      commandTimeoutMs: 1000,
      maxPayloadChars: 4 * config.http.max_body_bytes,
      maxTraceMs: config.agents.deep_trace_max_ms,
      onMessage: (m) => plane?.onMessage(m),
      onInvalid: () => invalid.inc(),
      onDegraded: (d) => {
        if (d) {
          this.outageSince = Date.now();
          log.warn({ redis: 'unreachable' }, 'agents: Redis unreachable; the registry and commands are this host\'s until it is back');
          return;
        }
        this.store.signingKeyMismatch(agents.signer.publicKeyBase64).then((other) => {
          if (other !== null) {
            log.error({ key_file: config.agents.key_file, public_key: agents.signer.publicKeyBase64, fleet_public_key: other },
              'agents: this host\'s agents.key_file is not the fleet\'s: agents registered elsewhere cannot verify its commands and their tokens are refused here');
          }
        }, () => {});
        const since = this.outageSince;
        this.outageSince = null;
        errorsLogged = 0;
        (plane ? plane.writeBack() : Promise.resolve(0)).then(
          (n) => log.info({ written_back: n, ...(since !== null ? { outage_ms: Date.now() - since } : {}) }, 'agents: Redis reachable; fleet registry and commands in use'),
          (err: Error) => log.warn({ err: err.message }, 'agents: writing this host\'s agents back to Redis failed'),
        );
      },
      // Connection errors repeat while Redis is away: the outage is logged once, above.
      onRedisError: (err) => { if (errorsLogged++ === 0 && this.outageSince === null) log.debug({ err: err.message }, 'agents: Redis connection error'); },
    });
    plane = agents.attachFleet({
      store: this.store,
      hostId: cluster.host_id,
      routed: (r, n) => routed.inc({ result: r }, n),
      servedLocally: () => local.inc(),
    });
  }

  /** Connects; when Redis is not reachable yet the host starts degraded and says so once. */
  async start(): Promise<void> {
    await this.store.start();
    if (this.store.degraded && this.outageSince === null) {
      this.outageSince = Date.now();
      this.log.warn({ redis: 'unreachable' }, 'agents: Redis unreachable at start; the registry and commands are this host\'s until it is back');
    }
  }

  get degraded(): boolean {
    return this.store.degraded;
  }

  close(): void {
    this.store.close();
  }
}
