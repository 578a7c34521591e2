// The errors the emulated Pub/Sub API answers with: a gRPC status code plus the custom
// `error-code` and `rpc-id` trailers Salesforce adds, and the RPC id appended to the message after
// "rpcId: " (Pub/Sub API guide, "Handle Errors" and its "Error Codes" list:
// https://developer.salesforce.com/docs/platform/pub-sub-api/guide/handling-errors.html;
// "Retry Long-Lived RPC Calls After an Error Occurs":
// https://developer.salesforce.com/docs/platform/pub-sub-api/guide/retry-rpc-calls.html).
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';

export const ERROR_CODES = {
  /** UNAUTHENTICATED: missing, invalid or expired session, or a tenant that does not match */
  auth: 'sfdc.platform.eventbus.grpc.service.auth.error',
  /** INVALID_ARGUMENT: the replay id is not valid (for example outside the 72-hour retention) */
  replayCorrupted: 'sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted',
  /** NOT_FOUND: the topic does not exist or CDC is not enabled for the entity */
  topicNotFound: 'sfdc.platform.eventbus.grpc.service.topic.not.found',
  /** INVALID_ARGUMENT: a later FetchRequest names another topic */
  topicMismatch: 'sfdc.platform.eventbus.grpc.subscription.topic.mismatch',
  /** INVALID_ARGUMENT: no schema with that id */
  schemaNotFound: 'sfdc.platform.eventbus.grpc.schema.not.found',
  /** UNIMPLEMENTED in the emulator: publishing */
  unsupported: 'sfdc.platform.eventbus.grpc.service.unsupported',
} as const;

export interface PubSubError extends Partial<grpc.StatusObject> {
  code: grpc.status;
  details: string;
  metadata: grpc.Metadata;
}

export function pubSubError(code: grpc.status, errorCode: string, message: string): PubSubError {
  const rpcId = randomUUID();
  const metadata = new grpc.Metadata();
  metadata.set('error-code', errorCode);
  metadata.set('rpc-id', rpcId);
  return { code, details: `${message} rpcId: ${rpcId}`, metadata };
}
