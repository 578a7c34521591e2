// Public surface of the local Salesforce org emulator (see README.md in this directory).
export {
  startEmulator,
  DEFAULT_API_VERSIONS,
  DEFAULT_CLIENT_ID,
  DEFAULT_CLIENT_SECRET,
  DEFAULT_PASSWORD,
  DEFAULT_USERNAME,
} from './server.ts';
export type { Emulator, EmulatorOptions } from './server.ts';
export { EmulatorControl } from './control.ts';
export type { FaultSpec, LimitsState } from './control.ts';
export { Org, SalesforceError } from './org.ts';
export type { OrgOptions, OrgRecord, ApiRecord } from './org.ts';
