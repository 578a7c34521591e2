// The Pub/Sub API's gRPC service from the vendored pubsub_api.proto (see proto/README.md), shared
// by the client and the emulator so both speak exactly the published wire format.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO_PATH = fileURLToPath(new URL('./proto/pubsub_api.proto', import.meta.url));

export type ReplayPreset = 'LATEST' | 'EARLIEST' | 'CUSTOM';

export interface FetchRequest {
  topic_name?: string;
  replay_preset?: ReplayPreset;
  replay_id?: Buffer;
  num_requested?: number;
  auth_refresh?: string;
}

export interface ConsumerEvent {
  event: { id: string; schema_id: string; payload: Buffer; headers: Array<{ key: string; value: Buffer }> };
  replay_id: Buffer;
}

export interface FetchResponse {
  events: ConsumerEvent[];
  latest_replay_id: Buffer;
  rpc_id: string;
  pending_num_requested: number;
}

export interface TopicInfo {
  topic_name: string;
  tenant_guid: string;
  can_publish: boolean;
  can_subscribe: boolean;
  schema_id: string;
  rpc_id: string;
}

export interface SchemaInfo {
  schema_json: string;
  schema_id: string;
  rpc_id: string;
}

/** The client side of the service as grpc-js builds it from the .proto. */
export interface PubSubClient extends grpc.Client {
  Subscribe(
    metadata: grpc.Metadata,
    options?: grpc.CallOptions,
  ): grpc.ClientDuplexStream<FetchRequest, FetchResponse>;
  GetTopic(
    req: { topic_name: string },
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: TopicInfo) => void,
  ): grpc.ClientUnaryCall;
  GetSchema(
    req: { schema_id: string },
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: SchemaInfo) => void,
  ): grpc.ClientUnaryCall;
}

export type PubSubClientConstructor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => PubSubClient;

let loaded: grpc.ServiceClientConstructor | undefined;

/** The eventbus.v1.PubSub service: `.service` for a server, `new` for a client. */
export function pubSubService(): grpc.ServiceClientConstructor {
  if (loaded) return loaded;
  const def = protoLoader.loadSync(PROTO_PATH, {
    keepCase: true,
    // replay ids and payloads stay Buffers; commit numbers etc. are not used as int64 here
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    eventbus: { v1: { PubSub: grpc.ServiceClientConstructor } };
  };
  loaded = pkg.eventbus.v1.PubSub;
  return loaded;
}

/** `error-code` trailer Salesforce adds to Pub/Sub API errors (see the emulator's errors.ts). */
export function errorCodeOf(err: { metadata?: grpc.Metadata }): string | undefined {
  const v = err.metadata?.get('error-code')[0];
  return v === undefined ? undefined : String(v);
}
