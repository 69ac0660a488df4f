// Piscina task hosting one shard for the life of its thread. It is fed over a
// transferred MessagePort (never a piscina task per frame: 9-30 us each).
import type { MessagePort } from 'node:worker_threads';
import { Shard } from './shard.js';
import { M_SHUTDOWN, S_READY, type MainToShard, type ShardToMain, type ShardSettings } from '../protocol/thread-messages.js';

export interface ShardTaskInput extends ShardSettings {
  port: MessagePort;
  shardId: number;
  counters: SharedArrayBuffer;
  testHooks: boolean;
}

export default function runShard(input: ShardTaskInput): Promise<number> {
  const { port } = input;
  const shard = new Shard({
    shardId: input.shardId,
    counters: new Float64Array(input.counters),
    token: input.token,
    tokens: input.tokens,
    limits: input.limits,
    overflow: input.overflow,
    ack: input.ack,
    testHooks: input.testHooks,
    post: (msg: ShardToMain, transfer) => port.postMessage(msg, transfer),
  });
  return new Promise((resolve) => {
    port.on('message', (msg: MainToShard) => {
      shard.handle(msg);
      if (msg.t === M_SHUTDOWN) {
        port.close();
        resolve(input.shardId);
      }
    });
    port.postMessage({ t: S_READY, shard: input.shardId } satisfies ShardToMain);
  });
}
