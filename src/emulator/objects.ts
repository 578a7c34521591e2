// Object and field definitions of the emulated org: the standard objects the notifier reads, with
// a sensible subset of their standard fields (names and types as in the Salesforce Object
// Reference). Anything may be added through OrgOptions.objects.

export type FieldType =
  | 'id'
  | 'string'
  | 'textarea'
  | 'email'
  | 'phone'
  | 'url'
  | 'picklist'
  | 'boolean'
  | 'int'
  | 'double'
  | 'currency'
  | 'percent'
  | 'date'
  | 'datetime'
  | 'reference';

export interface FieldDef {
  name: string;
  label: string;
  type: FieldType;
  referenceTo?: string[];
  relationshipName?: string;
  nillable: boolean;
  createable: boolean;
  updateable: boolean;
  length?: number;
  picklistValues?: string[];
}

export interface ObjectDef {
  name: string;
  label: string;
  labelPlural: string;
  keyPrefix: string;
  fields: FieldDef[];
  /** required on create */
  required?: string[];
}

function label(name: string): string {
  return name
    .replace(/Id$/, name === 'Id' ? 'Id' : '')
    .replace(/([a-z])([A-Z])/g, '$1 $2')
    .trim();
}

type Opts = Partial<Omit<FieldDef, 'name' | 'type'>>;

function f(name: string, type: FieldType, opts: Opts = {}): FieldDef {
  const def: FieldDef = {
    name,
    label: opts.label ?? label(name),
    type,
    nillable: opts.nillable ?? true,
    createable: opts.createable ?? true,
    updateable: opts.updateable ?? opts.createable ?? true,
  };
  if (type === 'string' || type === 'email' || type === 'phone' || type === 'url' || type === 'picklist') {
    def.length = opts.length ?? (type === 'email' ? 80 : type === 'phone' ? 40 : 255);
  } else if (type === 'textarea') {
    def.length = opts.length ?? 32000;
  } else if (opts.length !== undefined) {
    def.length = opts.length;
  }
  if (opts.picklistValues) def.picklistValues = opts.picklistValues;
  if (opts.referenceTo) def.referenceTo = opts.referenceTo;
  if (opts.relationshipName) def.relationshipName = opts.relationshipName;
  return def;
}

const readOnly: Opts = { createable: false, updateable: false, nillable: false };

function lookup(name: string, to: string, opts: Opts = {}): FieldDef {
  return f(name, 'reference', { referenceTo: [to], relationshipName: name.replace(/Id$/, ''), ...opts });
}

/** Id, Name-less audit fields and IsDeleted, common to every object here. */
function system(): FieldDef[] {
  return [
    f('Id', 'id', { ...readOnly, label: 'Record ID', length: 18 }),
    f('IsDeleted', 'boolean', { ...readOnly, label: 'Deleted' }),
    lookup('CreatedById', 'User', readOnly),
    f('CreatedDate', 'datetime', readOnly),
    lookup('LastModifiedById', 'User', readOnly),
    f('LastModifiedDate', 'datetime', readOnly),
    f('SystemModstamp', 'datetime', { ...readOnly, label: 'System Modstamp' }),
  ];
}

const owner = (): FieldDef => lookup('OwnerId', 'User', { nillable: false });
/** Leads and Cases may be owned by a queue (a Group of Type Queue, Id prefix 00G). */
const userOrQueueOwner = (): FieldDef =>
  f('OwnerId', 'reference', { referenceTo: ['User', 'Group'], relationshipName: 'Owner', nillable: false });
const computedName = (): FieldDef => f('Name', 'string', { ...readOnly, label: 'Full Name', length: 121 });

const address = (prefix = ''): FieldDef[] => [
  f(`${prefix}Street`, 'textarea', { length: 255 }),
  f(`${prefix}City`, 'string', { length: 40 }),
  f(`${prefix}State`, 'string', { length: 80 }),
  f(`${prefix}PostalCode`, 'string', { length: 20 }),
  f(`${prefix}Country`, 'string', { length: 80 }),
];

const LEAD_SOURCES = ['Web', 'Phone Inquiry', 'Partner Referral', 'Purchased List', 'Other'];
const INDUSTRIES = [
  'Agriculture',
  'Banking',
  'Education',
  'Energy',
  'Healthcare',
  'Media',
  'Retail',
  'Technology',
];
const RATINGS = ['Hot', 'Warm', 'Cold'];

export const STANDARD_OBJECTS: ObjectDef[] = [
  {
    name: 'Lead',
    label: 'Lead',
    labelPlural: 'Leads',
    keyPrefix: '00Q',
    required: ['LastName', 'Company'],
    fields: [
      ...system(),
      f('FirstName', 'string', { length: 40 }),
      f('LastName', 'string', { length: 80, nillable: false }),
      computedName(),
      f('Company', 'string', { nillable: false }),
      f('Email', 'email'),
      f('Phone', 'phone'),
      f('Title', 'string', { length: 128 }),
      f('Status', 'picklist', {
        // the classic defaults, plus Qualified / Unqualified as many orgs' lead processes add
        picklistValues: [
          'Open - Not Contacted',
          'Working - Contacted',
          'Qualified',
          'Unqualified',
          'Closed - Converted',
          'Closed - Not Converted',
        ],
      }),
      f('LeadSource', 'picklist', { picklistValues: LEAD_SOURCES }),
      f('Industry', 'picklist', { picklistValues: INDUSTRIES }),
      f('Rating', 'picklist', { picklistValues: RATINGS }),
      f('Description', 'textarea'),
      ...address(),
      f('Website', 'url'),
      f('NumberOfEmployees', 'int'),
      f('AnnualRevenue', 'currency'),
      f('IsConverted', 'boolean', { nillable: false, label: 'Converted' }),
      userOrQueueOwner(),
    ],
  },
  {
    name: 'Contact',
    label: 'Contact',
    labelPlural: 'Contacts',
    keyPrefix: '003',
    required: ['LastName'],
    fields: [
      ...system(),
      lookup('AccountId', 'Account'),
      f('FirstName', 'string', { length: 40 }),
      f('LastName', 'string', { length: 80, nillable: false }),
      computedName(),
      f('Email', 'email'),
      f('Phone', 'phone'),
      f('MobilePhone', 'phone'),
      f('Title', 'string', { length: 128 }),
      f('Department', 'string', { length: 80 }),
      f('LeadSource', 'picklist', { picklistValues: LEAD_SOURCES }),
      f('Description', 'textarea'),
      f('Birthdate', 'date'),
      ...address('Mailing'),
      owner(),
    ],
  },
  {
    name: 'Account',
    label: 'Account',
    labelPlural: 'Accounts',
    keyPrefix: '001',
    required: ['Name'],
    fields: [
      ...system(),
      f('Name', 'string', { nillable: false, label: 'Account Name' }),
      f('Type', 'picklist', { picklistValues: ['Prospect', 'Customer', 'Partner', 'Other'] }),
      f('Industry', 'picklist', { picklistValues: INDUSTRIES }),
      f('Phone', 'phone'),
      f('Website', 'url'),
      f('Description', 'textarea'),
      f('NumberOfEmployees', 'int'),
      f('AnnualRevenue', 'currency'),
      f('Rating', 'picklist', { picklistValues: RATINGS }),
      ...address('Billing'),
      owner(),
    ],
  },
  {
    name: 'Case',
    label: 'Case',
    labelPlural: 'Cases',
    keyPrefix: '500',
    fields: [
      ...system(),
      f('CaseNumber', 'string', { ...readOnly, length: 30 }),
      lookup('AccountId', 'Account'),
      lookup('ContactId', 'Contact'),
      f('Subject', 'string'),
      f('Description', 'textarea'),
      f('Status', 'picklist', { picklistValues: ['New', 'Working', 'Escalated', 'Closed'] }),
      f('Priority', 'picklist', { picklistValues: ['High', 'Medium', 'Low'] }),
      f('Origin', 'picklist', { picklistValues: ['Phone', 'Email', 'Web'] }),
      f('Type', 'picklist', { picklistValues: ['Question', 'Problem', 'Feature Request'] }),
      f('SuppliedEmail', 'email', { label: 'Web Email' }),
      f('SuppliedName', 'string', { length: 80, label: 'Web Name' }),
      f('IsClosed', 'boolean', { ...readOnly, label: 'Closed' }),
      f('ClosedDate', 'datetime', readOnly),
      userOrQueueOwner(),
    ],
  },
  {
    name: 'Opportunity',
    label: 'Opportunity',
    labelPlural: 'Opportunities',
    keyPrefix: '006',
    required: ['Name', 'StageName', 'CloseDate'],
    fields: [
      ...system(),
      lookup('AccountId', 'Account'),
      f('Name', 'string', { length: 120, nillable: false }),
      f('StageName', 'picklist', {
        nillable: false,
        label: 'Stage',
        picklistValues: ['Prospecting', 'Qualification', 'Proposal/Price Quote', 'Closed Won', 'Closed Lost'],
      }),
      f('Amount', 'currency'),
      f('Probability', 'percent'),
      f('CloseDate', 'date', { nillable: false }),
      f('Type', 'picklist', { picklistValues: ['New Customer', 'Existing Customer - Upgrade'] }),
      f('LeadSource', 'picklist', { picklistValues: LEAD_SOURCES }),
      f('Description', 'textarea'),
      f('IsClosed', 'boolean', { ...readOnly, label: 'Closed' }),
      f('IsWon', 'boolean', { ...readOnly, label: 'Won' }),
      owner(),
    ],
  },
  {
    name: 'User',
    label: 'User',
    labelPlural: 'Users',
    keyPrefix: '005',
    required: ['Username', 'LastName', 'Email'],
    fields: [
      ...system(),
      f('Username', 'string', { length: 80, nillable: false }),
      f('Email', 'email', { nillable: false }),
      f('FirstName', 'string', { length: 40 }),
      f('LastName', 'string', { length: 80, nillable: false }),
      computedName(),
      f('Alias', 'string', { length: 8 }),
      f('Title', 'string', { length: 80 }),
      f('Department', 'string', { length: 80 }),
      f('Phone', 'phone'),
      f('IsActive', 'boolean', { nillable: false, label: 'Active' }),
      lookup('ManagerId', 'User'),
      f('TimeZoneSidKey', 'picklist', { label: 'Time Zone' }),
      f('LocaleSidKey', 'picklist', { label: 'Locale' }),
      f('LanguageLocaleKey', 'picklist', { label: 'Language' }),
      f('EmailEncodingKey', 'picklist', { label: 'Email Encoding' }),
    ],
  },
  {
    // Queues are Groups of Type Queue; Email is the queue's address and may be empty.
    name: 'Group',
    label: 'Group',
    labelPlural: 'Groups',
    keyPrefix: '00G',
    required: ['Name'],
    fields: [
      ...system(),
      f('Name', 'string', { length: 40, nillable: false, label: 'Label' }),
      f('DeveloperName', 'string', { length: 80 }),
      f('Type', 'picklist', { picklistValues: ['Queue', 'Regular'] }),
      f('Email', 'email'),
      lookup('OwnerId', 'User', { nillable: false }),
    ],
  },
  {
    name: 'PushTopic',
    label: 'Push Topic',
    labelPlural: 'Push Topics',
    keyPrefix: '0IF',
    required: ['Name', 'Query', 'ApiVersion'],
    fields: [
      ...system(),
      f('Name', 'string', { length: 25, nillable: false, label: 'Topic Name' }),
      f('Query', 'string', { length: 1300, nillable: false, label: 'SOQL Query' }),
      f('ApiVersion', 'double', { nillable: false }),
      f('NotifyForOperationCreate', 'boolean', { nillable: false, label: 'Create' }),
      f('NotifyForOperationUpdate', 'boolean', { nillable: false, label: 'Update' }),
      f('NotifyForOperationDelete', 'boolean', { nillable: false, label: 'Delete' }),
      f('NotifyForOperationUndelete', 'boolean', { nillable: false, label: 'Undelete' }),
      f('NotifyForFields', 'picklist', {
        nillable: false,
        label: 'Notify For Fields',
        picklistValues: ['All', 'Referenced', 'Select', 'Where'],
      }),
      f('IsActive', 'boolean', { nillable: false, label: 'Is Active' }),
      f('Description', 'string', { length: 400 }),
    ],
  },
];

/**
 * Defaults Salesforce fills on create when the field is not given (boolean fields are never null
 * in Salesforce; the PushTopic defaults are those of the Streaming API Developer Guide).
 */
export const CREATE_DEFAULTS: Record<string, Record<string, string | number | boolean>> = {
  Lead: { Status: 'Open - Not Contacted', IsConverted: false },
  Case: { Status: 'New', Priority: 'Medium', IsClosed: false },
  Opportunity: { IsClosed: false, IsWon: false },
  Group: { Type: 'Queue' },
  User: { IsActive: true, TimeZoneSidKey: 'GMT', LocaleSidKey: 'en_US', LanguageLocaleKey: 'en_US' },
  PushTopic: {
    NotifyForOperationCreate: true,
    NotifyForOperationUpdate: true,
    NotifyForOperationDelete: true,
    NotifyForOperationUndelete: true,
    NotifyForFields: 'Referenced',
    IsActive: true,
  },
};

/** Objects whose Name is FirstName + ' ' + LastName, computed by the platform. */
export const PERSON_NAME_OBJECTS = new Set(['Lead', 'Contact', 'User']);
