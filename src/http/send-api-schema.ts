// The Send API's request and reply shapes (zod), in the SMTP connector's own field names, and the
// OpenAPI 3.1 document generated from them with z.toJSONSchema, so the document cannot drift from
// what the server accepts. http/send-api.ts serves both.
import { z } from 'zod';
import { InvalidAddressError, parseMailboxes } from '../templates/recipients.ts';
import type { Mailbox } from '../templates/recipients.ts';
import { OUTBOX_STATES } from '../store/index.ts';

/**
 * a `;` or `,` separated list whose every entry is a mailbox templates/recipients.ts accepts;
 * parsed once, here (the output is the mailboxes)
 */
const addressList = (what: string) =>
  z
    .string()
    .max(100_000)
    .transform((value, ctx): Mailbox[] => {
      try {
        return parseMailboxes(value);
      } catch (err) {
        if (!(err instanceof InvalidAddressError)) throw err;
        ctx.issues.push({ code: 'custom', message: err.message, input: value });
        return z.NEVER;
      }
    })
    .describe(`${what}: addresses separated by ';' or ',' (Name <a@example.com> allowed)`);

/** RFC 4648 section 4 alphabet, padded; whitespace (line-wrapped base64) is ignored */
export function isBase64(text: string): boolean {
  const s = text.replace(/\s+/g, '');
  return s.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(s);
}

export const attachmentSchema = z
  .strictObject({
    ContentData: z
      .string()
      .describe('the content: base64 (ContentTransferEncoding base64, the default) or text'),
    ContentType: z
      .string()
      .regex(/^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+$/, 'must be a MIME type such as application/pdf')
      .optional()
      .describe('MIME type; default: guessed from FileName'),
    ContentTransferEncoding: z
      .enum(['base64', 'none'])
      .default('base64')
      .describe('how ContentData is given: base64 (default) or none (text)'),
    FileName: z.string().min(1).max(255).describe('the file name shown to the reader'),
    ContentId: z
      .string()
      .regex(/^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]{1,250}$/, "letters, digits and !#$%&'*+/=?^_`{|}~.@- only")
      .optional()
      .describe('makes the attachment inline, referenced from an HTML Body as cid:<ContentId>'),
  })
  .superRefine((a, ctx) => {
    if (a.ContentTransferEncoding === 'base64' && !isBase64(a.ContentData))
      ctx.addIssue({ code: 'custom', path: ['ContentData'], message: 'is not valid base64' });
  });

export const sendEmailSchema = z
  .strictObject({
    From: z
      .string()
      .max(1000)
      .optional()
      .describe("the sender, one address; default: the token's defaultFrom"),
    To: addressList('recipients'),
    CC: addressList('copy recipients').optional(),
    Bcc: addressList('blind copy recipients').optional(),
    Subject: z.string().min(1, 'must not be empty').max(10_000),
    Body: z.string().default('').describe('text, or HTML when IsHtml is true; may be empty'),
    IsHtml: z.boolean().default(false),
    Importance: z.enum(['High', 'Normal', 'Low']).default('Normal'),
    Attachments: z.array(attachmentSchema).max(100).default([]),
  })
  .describe(
    'The SMTP connector\'s Send Email fields. Names are matched case-insensitively (camelCase such as "isHtml" is accepted); unknown fields are refused.',
  );

export type SendEmailInput = z.output<typeof sendEmailSchema>;

export const fieldErrorSchema = z.strictObject({
  field: z
    .string()
    .describe('the field, as a path such as Attachments[0].ContentData; empty for the whole body'),
  message: z.string(),
});
export const badRequestSchema = z.strictObject({ errors: z.array(fieldErrorSchema).min(1) });

const stateSchema = z.enum(OUTBOX_STATES as [string, ...string[]]);

export const acceptedSchema = z.strictObject({
  id: z.string().describe('the message id, for GET /v1/messages/{id}'),
  state: stateSchema.describe('pending until the dispatcher sends it'),
});
export const finalSchema = z.strictObject({
  id: z.string(),
  state: stateSchema,
  response: z.string().nullable().describe("the SMTP server's reply (sent), or the reason (dead, unknown)"),
});
export const messageStatusSchema = z.strictObject({
  id: z.string(),
  state: stateSchema,
  attempts: z.number().int(),
  response: z.string().nullable().describe("the SMTP server's last reply, or the last error"),
  createdAt: z.string(),
  updatedAt: z.string(),
  sentAt: z.string().nullable(),
  nextAttemptAt: z.string().nullable(),
});
export const errorSchema = z.strictObject({ error: z.string() });
export const faultSchema = z.strictObject({
  errorId: z.string().describe('quote it to the operator: the log line with this id has the cause'),
});

function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const out = z.toJSONSchema(schema, { io: 'input', target: 'draft-2020-12' }) as Record<string, unknown>;
  delete out.$schema; // OpenAPI 3.1 names the dialect once, in jsonSchemaDialect
  return out;
}

/** components.schemas: every shape above, as JSON Schema 2020-12 */
export function componentSchemas(): Record<string, Record<string, unknown>> {
  return {
    SendEmail: jsonSchema(sendEmailSchema),
    Attachment: jsonSchema(attachmentSchema),
    BadRequest: jsonSchema(badRequestSchema),
    Accepted: jsonSchema(acceptedSchema),
    Final: jsonSchema(finalSchema),
    MessageStatus: jsonSchema(messageStatusSchema),
    Error: jsonSchema(errorSchema),
    Fault: jsonSchema(faultSchema),
  };
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const reply = (description: string, schema: string, headers?: Record<string, unknown>) => ({
  description,
  content: { 'application/json': { schema: ref(schema) } },
  ...(headers ? { headers } : {}),
});

/** The OpenAPI 3.1 document of GET /v1/openapi.json. */
export function openApiDocument(version: string): Record<string, unknown> {
  const auth = {
    '401': reply('missing or unknown token', 'Error', {
      'WWW-Authenticate': { schema: { type: 'string' }, description: 'Bearer' },
    }),
    '429': reply("over the token's rate", 'Error', {
      'Retry-After': { schema: { type: 'integer' }, description: 'seconds' },
    }),
    '500': reply('an internal fault (never bad input)', 'Fault'),
    '503': reply('the store is not usable', 'Error'),
  };
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'lead-notifier Send API',
      version,
      description:
        "The SMTP connector's Send Email, served by lead-notifier: each message goes into the durable outbox and is sent once by the dispatcher.",
    },
    security: [{ bearer: [] }],
    paths: {
      '/v1/send': {
        post: {
          operationId: 'sendEmail',
          parameters: [
            {
              name: 'wait',
              in: 'query',
              schema: { type: 'boolean' },
              description: 'wait (up to waitTimeoutMs) for the SMTP server to accept it or for a final state',
            },
            {
              name: 'Idempotency-Key',
              in: 'header',
              schema: { type: 'string', minLength: 1, maxLength: 255 },
              description:
                'once-only per token: the same key and body returns the first reply and sends nothing more; another body: 409',
            },
          ],
          requestBody: { required: true, content: { 'application/json': { schema: ref('SendEmail') } } },
          responses: {
            '200': reply('wait=true: the SMTP server accepted it', 'Final'),
            '202': reply('queued (or wait=true timed out: still queued)', 'Accepted'),
            '400': reply(
              'invalid body (malformed JSON, not application/json, wrong types, unknown fields, bad addresses, bad base64): each field and what is wrong',
              'BadRequest',
            ),
            '403': reply('From or a recipient is not allowed for this token', 'Error'),
            '409': reply('the Idempotency-Key was used with another body', 'Error'),
            '413': reply('the body is over maxBodyBytes', 'Error'),
            '405': reply('another method than POST', 'Error'),
            '502': reply('wait=true: the SMTP server refused it for good (dead)', 'Final'),
            '504': reply('wait=true: delivery is uncertain (unknown)', 'Final'),
            ...auth,
          },
        },
      },
      '/v1/messages/{id}': {
        get: {
          operationId: 'getMessage',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          responses: {
            '200': reply("the message's state (never its body or recipients)", 'MessageStatus'),
            '404': reply("unknown, or another token's message", 'Error'),
            ...auth,
          },
        },
      },
      '/v1/openapi.json': {
        get: {
          operationId: 'openApi',
          security: [],
          responses: { '200': { description: 'this document', content: { 'application/json': {} } } },
        },
      },
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: componentSchemas(),
    },
  };
}
