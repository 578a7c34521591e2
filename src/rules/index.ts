// Rule-level guards. The rule's `where` is pushed into SOQL by the source; what is left here is
// the recipient side: address lists and the allowRecipients guard.
export {
  compileAllowList,
  formatMailbox,
  InvalidAddressError,
  isValidAddress,
  parseAddressList,
  parseMailboxes,
  staticRecipientProblems,
} from './recipients.ts';
export type { Mailbox } from './recipients.ts';
