// Writes config/notifier.schema.json from the zod schema (`npm run schema`), for editors and for
// tools that validate YAML. The input side: keys with defaults are optional.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { configSchema } from '../src/config/schema.ts';

const ENV_REF_PATTERN = '^\\$\\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\\}$';

export const SCHEMA_FILE = fileURLToPath(new URL('../config/notifier.schema.json', import.meta.url));

/** The JSON Schema text, exactly as committed (2-space indent, trailing newline). */
export function generateJsonSchema(): string {
  const schema = z.toJSONSchema(configSchema, {
    io: 'input',
    target: 'draft-2020-12',
    // the loader coerces a whole ${NAME} in a number/boolean field (port: ${SMTP_PORT:-587}), so an
    // editor must accept that string there too
    override: ({ jsonSchema }) => {
      const { type } = jsonSchema;
      if (type !== 'number' && type !== 'integer' && type !== 'boolean') return;
      const { default: dflt, description, ...typed } = jsonSchema;
      for (const k of Object.keys(jsonSchema)) delete (jsonSchema as Record<string, unknown>)[k];
      if (description !== undefined) jsonSchema.description = description;
      if (dflt !== undefined) jsonSchema.default = dflt;
      jsonSchema.anyOf = [typed, { type: 'string', pattern: ENV_REF_PATTERN }];
    },
  });
  const doc = {
    ...schema,
    title: 'lead-notifier configuration',
    description: 'Generated from src/config/schema.ts by `npm run schema`; do not edit by hand.',
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(SCHEMA_FILE, generateJsonSchema());
  console.log(`wrote ${SCHEMA_FILE}`);
}
