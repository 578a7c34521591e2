// The config module's public surface.
export {
  CONFIG_ENV_VAR,
  DEFAULT_CONFIG_PATH,
  formatKeyPath,
  isTemplateFile,
  loadConfig,
  parseConfigText,
  redactConfig,
  resolveConfigPath,
  secretsOf,
  storeLocation,
} from './load.ts';
export type { LoadOptions, RuleCheck, StoreLocation } from './load.ts';
export {
  configSchema,
  ruleSchema,
  emailSchema,
  smtpSchema,
  salesforceSchema,
  authSchema,
  deliverySchema,
  attachmentSchema,
} from './schema.ts';
export { RATE_PRESETS, sendLimits } from './relays.ts';
export type { RateLimit, RatePreset, SendLimits } from './relays.ts';
export type {
  AuthConfig,
  Config,
  DeliveryConfig,
  EmailConfig,
  LoadedConfig,
  RuleConfig,
  SalesforceConfig,
  SendApiConfig,
  SendApiTokenConfig,
  SmtpAuthConfig,
  SmtpConfig,
} from './schema.ts';
