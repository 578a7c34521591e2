import { readdirSync, readFileSync } from 'node:fs';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * Numbered SQL files under migrations/<dialect>/ (NNN_name.sql), in version order. Read with fs
 * relative to this module because Node cannot import .sql.
 */
export function loadMigrations(dialect: 'sqlite' | 'postgres'): Migration[] {
  const dir = new URL(`./migrations/${dialect}/`, import.meta.url);
  const migrations: Migration[] = [];
  for (const file of readdirSync(dir)) {
    const m = /^(\d+)_([\w-]+)\.sql$/.exec(file);
    if (!m) continue;
    migrations.push({ version: Number(m[1]), name: m[2]!, sql: readFileSync(new URL(file, dir), 'utf8') });
  }
  migrations.sort((a, b) => a.version - b.version);
  for (let i = 0; i < migrations.length; i++) {
    if (migrations[i]!.version !== i + 1) {
      throw new Error(
        `${dialect} migrations must be numbered 1..n without gaps; found ${migrations[i]!.version}`,
      );
    }
  }
  return migrations;
}
