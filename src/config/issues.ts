// Problems found in the config, and how they are shown: `file:line key.path: message`, secrets scrubbed.
import { isAlias, isMap, isScalar, isSeq } from 'yaml';
import type { Document, LineCounter, Node as YamlNode } from 'yaml';
import { REDACTED } from '../util/secrets.ts';

export type Seg = string | number;
export type KeyPath = Seg[];

export interface Issue {
  /** the key path shown in the message */
  path: KeyPath;
  message: string;
  /** where to point when it differs from `path` (e.g. a default that is not written in the file) */
  at?: KeyPath;
}

/** where issues are located: the file name as given, and its parsed YAML with line offsets */
export interface Source {
  file: string;
  doc: Document.Parsed;
  lines: LineCounter;
}

export function formatIssues(
  issues: Issue[],
  file: string,
  doc: Document.Parsed,
  lines: LineCounter,
  secrets: string[],
): string[] {
  // only scrub strings long enough not to erase ordinary words
  const scrubbable = secrets.filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
  const located = issues.map((iss, order) => ({ iss, order, line: lineOf(doc, lines, iss.at ?? iss.path) }));
  located.sort((a, b) => a.line - b.line || a.order - b.order);
  const out: string[] = [];
  for (const { iss, line } of located) {
    const where = iss.path.length > 0 ? `${formatKeyPath(iss.path)}: ` : '';
    let text = `${file}:${line} ${where}${oneLine(iss.message)}`;
    for (const s of scrubbable) text = text.split(s).join(REDACTED);
    if (!out.includes(text)) out.push(text);
  }
  return out;
}

/**
 * Issues are lines. Handlebars parse errors come as "Parse error on line N:\n<excerpt>\n---^\n<expected>";
 * keep the excerpt, drop the caret drawing.
 */
export function oneLine(message: string): string {
  const parts = message.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (parts.length <= 1) return message.trim();
  const hbs = /^Parse error on line \d+:$/.test(parts[0]!) && parts.length >= 4 && /^-*\^$/.test(parts[2]!);
  if (hbs) return `${parts[0]} ${parts.slice(3).join(' ')} (near "${parts[1]}")`;
  return parts.map((l) => l.trim()).join('; ');
}

/** The line of the deepest key of `path` present in the file (the key's own line, not its value's). */
export function lineOf(doc: Document.Parsed, lines: LineCounter, path: KeyPath): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as YamlNode | null)?.range?.[0] ?? 0;
  for (const seg of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      offset = (pair.key as YamlNode).range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as YamlNode | undefined;
      if (!item) break;
      offset = item.range?.[0] ?? offset;
      node = item;
    } else break;
  }
  return lines.linePos(offset).line;
}

/** ['rules', 0, 'email', 'to'] -> rules[0].email.to */
export function formatKeyPath(path: readonly Seg[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** 'email.attachments[0].content' -> ['email', 'attachments', 0, 'content'] */
export function parseKeyPath(text: string): KeyPath {
  const out: KeyPath = [];
  for (const m of text.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    if (m[2] !== undefined) out.push(Number(m[2]));
    else if (m[1] !== undefined) out.push(m[1]);
  }
  return out;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function pathKey(path: KeyPath): string {
  return JSON.stringify(path);
}

export function startsWith(path: KeyPath, prefix: KeyPath): boolean {
  return prefix.length <= path.length && prefix.every((s, i) => String(s) === String(path[i]));
}

export function getAt(data: unknown, path: KeyPath): unknown {
  let cur = data;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<Seg, unknown>)[seg];
  }
  return cur;
}

export function setAt(data: unknown, path: KeyPath, value: unknown): void {
  const parent = getAt(data, path.slice(0, -1));
  if (parent !== null && typeof parent === 'object') (parent as Record<Seg, unknown>)[path.at(-1)!] = value;
}
