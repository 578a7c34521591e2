// `emulator`: the local Salesforce org emulator alone; prints its URL on stdout, stops on a signal.
import { onShutdown } from '../app/signals.ts';
import { EXIT } from '../util/errors.ts';
import { intOption, str, type Command } from './options.ts';

export const emulator: Command = {
  name: 'emulator',
  usage: 'lead-notifier emulator [--port N] [--host ADDR]',
  options: { port: { type: 'string', short: 'p' }, host: { type: 'string' } },
  async run(values, _positionals, ctx) {
    const port = intOption(values, 'port', 0, 0, 65535);
    const { startEmulator } = await import('../emulator/index.ts');
    const emu = await startEmulator({ port, host: str(values, 'host') ?? '127.0.0.1' });
    ctx.out(emu.url);
    ctx.err(
      `Salesforce org emulator at ${emu.url}\n` +
        `  OAuth client: emulator-client / emulator-secret; user integration@example.com / emulator-password\n` +
        `  Pub/Sub API (gRPC, plaintext): ${emu.pubsub.endpoint} (salesforce.streaming: { endpoint: ${emu.pubsub.endpoint}, tls: false })\n` +
        `  control API: ${emu.url}/__emulator/ (see src/emulator/README.md). Ctrl-C stops.`,
    );
    return onShutdown(async () => {
      await emu.close();
      return EXIT.OK;
    }).done;
  },
};
