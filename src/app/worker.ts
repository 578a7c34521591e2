// The worker as `run` and `demo` start it: one logger, the metrics, the HTTP endpoints and the App.
// HTTP binds first, so liveness answers during start-up and a busy port fails before the store
// opens; stopping turns readiness 503 at once, drains the App, and closes HTTP last.
import { createRequire } from 'node:module';
import { secretsOf, type LoadedConfig } from '../config/index.ts';
import type { Metrics } from '../http/metrics.ts';
import type { HttpServer } from '../http/server.ts';
import type { SendApi } from '../http/send-api.ts';
import { enabledRules } from '../rules/index.ts';
import { coerceError, EXIT } from '../util/errors.ts';
import { createLogger, type Logger } from '../util/log.ts';
import { App } from './app.ts';
import type { AppEvents } from './app.ts';

function programVersion(): string {
  return (createRequire(import.meta.url)('../../package.json') as { version: string }).version;
}

export interface Worker {
  readonly app: App;
  readonly logger: Logger;
  /** set once start() has bound the HTTP port (when http.enabled) */
  readonly http: HttpServer | undefined;
  /** HTTP first, then the App; throws what failed (after undoing what had started) */
  start(): Promise<void>;
  /** readiness 503 from now on (the first signal) */
  markStopping(): void;
  /** graceful stop; returns the exit code. Safe twice, and during start(). */
  stop(): Promise<number>;
}

export function loggerFor(config: LoadedConfig): Logger {
  return createLogger({
    level: config.log.level,
    ...(config.log.format ? { format: config.log.format } : {}),
    secrets: secretsOf(config),
  });
}

export async function createWorker(config: LoadedConfig, opts: { logger?: Logger } = {}): Promise<Worker> {
  const logger = opts.logger ?? loggerFor(config);
  // loaded here, not at the top, and only with HTTP on: nothing else needs prom-client
  const http$ = config.http.enabled
    ? await Promise.all([import('../http/metrics.ts'), import('../http/server.ts')])
    : undefined;
  const metrics: Metrics | undefined = http$
    ? new http$[0].Metrics({
        rules: enabledRules(config).map((r) => r.name),
        channels: ['email', 'webhook', 'slack', 'teams'].filter((c) =>
          enabledRules(config).some((r) => r[c as 'email'] !== undefined),
        ),
      })
    : undefined;
  const apiConfig = config.http.enabled ? config.http.sendApi : undefined;
  let sendApi: SendApi | undefined;
  const events: AppEvents = {
    ...metrics?.events,
    onDispatch: (e) => {
      metrics?.events.onDispatch?.(e);
      sendApi?.onDispatch(e);
    },
  };
  const app = new App(config, { logger, events });
  if (apiConfig) {
    const { createSendApi } = await import('../http/send-api.ts');
    sendApi = createSendApi({
      config: apiConfig,
      app,
      logger,
      ...(metrics ? { metrics } : {}),
      version: programVersion(),
    });
  }
  let http: HttpServer | undefined;
  let starting: Promise<void> | undefined;
  let stopping: Promise<number> | undefined;

  return {
    app,
    logger,
    get http() {
      return http;
    },
    async start() {
      try {
        if (http$)
          http = await http$[1].startHttpServer({
            app,
            host: config.http.host,
            port: config.http.port,
            logger,
            secrets: secretsOf(config),
            ...(metrics ? { metrics } : {}),
            ...(sendApi ? { sendApi } : {}),
          });
        if (stopping) return; // stopped while the port was being bound
        starting = app.start();
        await starting;
      } catch (err) {
        await app.stop(1000).catch(() => undefined);
        await http?.close(100);
        throw err;
      }
    },
    markStopping() {
      http?.markStopping();
    },
    stop() {
      return (stopping ??= (async () => {
        http?.markStopping();
        let code: number = EXIT.OK;
        await starting?.catch(() => undefined);
        try {
          await app.stop();
        } catch (err) {
          logger.error({ err: coerceError(err) }, 'error while stopping');
          code = EXIT.FAILURE;
        }
        await http?.close();
        return code;
      })());
    },
  };
}
