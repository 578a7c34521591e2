// A tokenizer and recursive-descent parser for the SOQL subset the emulator supports (SOQL and
// SOSL Reference, "SOQL SELECT Syntax"). It produces an unbound AST: names are resolved against
// the org's objects in compile.ts. Everything outside the subset is rejected with MALFORMED_QUERY.

import { queryError, SalesforceError, type Pos } from './errors.ts';

// ---------------------------------------------------------------- tokens

export type Token =
  | { kind: 'ident'; text: string; upper: string; pos: Pos }
  | { kind: 'string'; text: string; value: string; likeSource: string; pos: Pos }
  | { kind: 'number'; text: string; value: number; pos: Pos }
  | { kind: 'date'; text: string; value: string; pos: Pos }
  | { kind: 'datetime'; text: string; value: number; pos: Pos }
  | { kind: 'punct'; text: string; pos: Pos }
  | { kind: 'eof'; text: string; pos: Pos };

// Date and dateTime formats of the SOQL reference ("Date Formats and Date Literals"): a dateTime
// needs a zone (Z or +hh:mm / -hh:mm); fractional seconds are accepted too.
const DATETIME_RE = /(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,3})?(Z|[+-]\d{2}:?\d{2})/y;
const DATE_RE = /(\d{4})-(\d{2})-(\d{2})/y;
const NUMBER_RE = /\d+(\.\d+)?|\.\d+/y;
const IDENT_RE = /[A-Za-z_][A-Za-z0-9_]*/y;
const PUNCT = ['!=', '<>', '<=', '>=', '=', '<', '>', '(', ')', ',', '.', ':', '-', '+'];

function validDate(y: number, m: number, d: number): boolean {
  if (m < 1 || m > 12 || d < 1) return false;
  const days = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return d <= days;
}

/** Quoted String Escape Sequences (SOQL reference); \% and \_ only mean something to LIKE. */
const ESCAPES: Record<string, string> = {
  n: '\n',
  r: '\r',
  t: '\t',
  b: '\b',
  f: '\f',
  '"': '"',
  "'": "'",
  '\\': '\\',
};

function regexEscape(ch: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(ch) ? '\\' + ch : ch;
}

export function tokenize(soql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const n = soql.length;
  while (i < n) {
    const ch = soql[i] as string;
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r' || ch === '\f') {
      i++;
      continue;
    }
    const start = i;
    if (ch === "'") {
      let value = '';
      let like = '';
      i++;
      let closed = false;
      while (i < n) {
        const c = soql[i] as string;
        if (c === "'") {
          closed = true;
          i++;
          break;
        }
        if (c === '\\') {
          const e = soql[i + 1];
          if (e === undefined) break;
          if (e === '%' || e === '_') {
            value += e;
            like += e;
          } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(soql.slice(i + 2, i + 6))) {
            const u = String.fromCharCode(parseInt(soql.slice(i + 2, i + 6), 16));
            value += u;
            like += regexEscape(u);
            i += 4;
          } else if (ESCAPES[e] !== undefined) {
            value += ESCAPES[e];
            like += regexEscape(ESCAPES[e]);
          } else {
            throw queryError(
              'MALFORMED_QUERY',
              soql,
              i,
              `Invalid string literal '${soql.slice(start, i + 2)}'. Illegal escape sequence '\\${e}'`,
            );
          }
          i += 2;
          continue;
        }
        value += c;
        // runs of % collapse to one .* (keeps the regex linear for patterns like '%%%%a')
        if (c !== '%' || !like.endsWith('.*') || soql[i - 1] !== '%') {
          like += c === '%' ? '.*' : c === '_' ? '.' : regexEscape(c);
        }
        i++;
      }
      if (!closed)
        throw queryError(
          'MALFORMED_QUERY',
          soql,
          start,
          `unexpected token: '${soql.slice(start, start + 20)}': unterminated string literal`,
        );
      tokens.push({ kind: 'string', text: soql.slice(start, i), value, likeSource: like, pos: start });
      continue;
    }
    if (ch >= '0' && ch <= '9') {
      DATETIME_RE.lastIndex = i;
      let m = DATETIME_RE.exec(soql);
      if (m) {
        const [, y, mo, d, h, mi, s, frac, zone] = m as unknown as string[];
        if (!validDate(+y!, +mo!, +d!) || +h! > 23 || +mi! > 59 || +s! > 59) {
          throw queryError(
            'MALFORMED_QUERY',
            soql,
            start,
            `line 1:${start} no viable alternative at character '${m[0]}': invalid dateTime`,
          );
        }
        const z = zone === 'Z' ? 'Z' : `${zone!.slice(0, 3)}:${zone!.slice(-2)}`;
        const ms = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}${(frac ?? '.000').padEnd(4, '0')}${z}`);
        i += m[0].length;
        tokens.push({ kind: 'datetime', text: m[0], value: ms, pos: start });
        continue;
      }
      DATE_RE.lastIndex = i;
      m = DATE_RE.exec(soql);
      if (m) {
        if (!validDate(+m[1]!, +m[2]!, +m[3]!)) {
          throw queryError('MALFORMED_QUERY', soql, start, `invalid date: ${m[0]}`);
        }
        i += m[0].length;
        tokens.push({ kind: 'date', text: m[0], value: m[0], pos: start });
        continue;
      }
    }
    if ((ch >= '0' && ch <= '9') || (ch === '.' && /[0-9]/.test(soql[i + 1] ?? ''))) {
      NUMBER_RE.lastIndex = i;
      const m = NUMBER_RE.exec(soql)!;
      i += m[0].length;
      tokens.push({ kind: 'number', text: m[0], value: Number(m[0]), pos: start });
      continue;
    }
    IDENT_RE.lastIndex = i;
    const id = IDENT_RE.exec(soql);
    if (id) {
      i += id[0].length;
      tokens.push({ kind: 'ident', text: id[0], upper: id[0].toUpperCase(), pos: start });
      continue;
    }
    const p = PUNCT.find((t) => soql.startsWith(t, i));
    if (p) {
      i += p.length;
      tokens.push({ kind: 'punct', text: p, pos: start });
      continue;
    }
    throw queryError('MALFORMED_QUERY', soql, start, `unexpected token: '${ch}'`);
  }
  tokens.push({ kind: 'eof', text: '<EOF>', pos: n });
  return tokens;
}

// ---------------------------------------------------------------- AST

export interface FieldRef {
  /** as written, e.g. ['Owner', 'Email'] */
  path: string[];
  pos: Pos;
}

export type Literal =
  | { kind: 'string'; value: string; likeSource: string; pos: Pos }
  | { kind: 'number'; value: number; pos: Pos }
  | { kind: 'boolean'; value: boolean; pos: Pos }
  | { kind: 'null'; pos: Pos }
  | { kind: 'date'; value: string; pos: Pos }
  | { kind: 'datetime'; value: number; pos: Pos }
  /** TODAY, LAST_N_DAYS:n, ... (upper-cased name) */
  | { kind: 'dateLiteral'; name: string; n?: number; pos: Pos };

export type CompareOp = '=' | '!=' | '<' | '<=' | '>' | '>=';

export type Condition =
  | { kind: 'and' | 'or'; items: Condition[] }
  | { kind: 'not'; item: Condition }
  | { kind: 'compare'; field: FieldRef; op: CompareOp; value: Literal }
  | { kind: 'in'; field: FieldRef; negated: boolean; values: Literal[] }
  | { kind: 'like'; field: FieldRef; pattern: Literal };

export interface OrderItem {
  field: FieldRef;
  desc: boolean;
  nullsLast: boolean;
}

export interface SelectQuery {
  /** null for SELECT COUNT() */
  fields: FieldRef[] | null;
  object: { name: string; pos: Pos };
  where: Condition | null;
  orderBy: OrderItem[];
  limit: number | null;
  offset: number | null;
}

// Date literals of the SOQL reference; the N_ forms take ':n'.
export const DATE_LITERALS = new Set([
  'YESTERDAY',
  'TODAY',
  'TOMORROW',
  'LAST_WEEK',
  'THIS_WEEK',
  'NEXT_WEEK',
  'LAST_MONTH',
  'THIS_MONTH',
  'NEXT_MONTH',
  'LAST_90_DAYS',
  'NEXT_90_DAYS',
  'THIS_YEAR',
  'LAST_YEAR',
  'NEXT_YEAR',
]);
export const DATE_N_LITERALS = new Set(['LAST_N_DAYS', 'NEXT_N_DAYS', 'N_DAYS_AGO']);

/** Clauses and constructs of full SOQL this emulator does not implement. */
const UNSUPPORTED_CLAUSE: Record<string, string> = {
  GROUP: 'GROUP BY',
  HAVING: 'HAVING',
  WITH: 'WITH',
  USING: 'USING SCOPE',
  FOR: 'FOR VIEW / FOR REFERENCE / FOR UPDATE',
  UPDATE: 'UPDATE TRACKING / VIEWSTAT',
  ALL: 'ALL ROWS',
};
const AGGREGATES = new Set(['COUNT', 'COUNT_DISTINCT', 'SUM', 'AVG', 'MIN', 'MAX']);

// ---------------------------------------------------------------- parser

class Parser {
  private i = 0;
  private readonly soql: string;
  private readonly tokens: Token[];
  constructor(soql: string) {
    this.soql = soql;
    this.tokens = tokenize(soql);
  }

  private peek(offset = 0): Token {
    return this.tokens[Math.min(this.i + offset, this.tokens.length - 1)] as Token;
  }
  private next(): Token {
    const t = this.peek();
    if (t.kind !== 'eof') this.i++;
    return t;
  }
  private isKeyword(word: string, offset = 0): boolean {
    const t = this.peek(offset);
    return t.kind === 'ident' && t.upper === word;
  }
  private isPunct(text: string): boolean {
    const t = this.peek();
    return t.kind === 'punct' && t.text === text;
  }
  private unexpected(t: Token = this.peek()): never {
    if (t.kind === 'eof') throw queryError('MALFORMED_QUERY', this.soql, t.pos, 'unexpected token: <EOF>');
    throw queryError('MALFORMED_QUERY', this.soql, t.pos, `unexpected token: '${t.text}'`);
  }
  private unsupported(t: Token, what: string): never {
    throw queryError(
      'MALFORMED_QUERY',
      this.soql,
      t.pos,
      `${what} is not supported by the lead-notifier org emulator`,
    );
  }
  private expectKeyword(word: string): Token {
    if (!this.isKeyword(word)) this.unexpected();
    return this.next();
  }
  private expectPunct(text: string): Token {
    if (!this.isPunct(text)) this.unexpected();
    return this.next();
  }

  parse(): SelectQuery {
    this.expectKeyword('SELECT');
    const fields = this.selectList();
    this.expectKeyword('FROM');
    const objTok = this.next();
    if (objTok.kind !== 'ident') this.unexpected(objTok);
    if (this.isPunct(',')) this.unsupported(this.peek(), 'Selecting from several objects');
    const q: SelectQuery = {
      fields,
      object: { name: objTok.text, pos: objTok.pos },
      where: null,
      orderBy: [],
      limit: null,
      offset: null,
    };
    this.rejectUnsupportedClause();
    if (this.isKeyword('WHERE')) {
      this.next();
      q.where = this.condition();
    }
    this.rejectUnsupportedClause();
    if (this.isKeyword('ORDER')) {
      this.next();
      this.expectKeyword('BY');
      q.orderBy = this.orderList();
    }
    this.rejectUnsupportedClause();
    if (this.isKeyword('LIMIT')) {
      this.next();
      q.limit = this.nonNegativeInt();
    }
    if (this.isKeyword('OFFSET')) {
      this.next();
      q.offset = this.nonNegativeInt();
    }
    this.rejectUnsupportedClause();
    if (this.peek().kind !== 'eof') this.unexpected();
    return q;
  }

  private rejectUnsupportedClause(): void {
    const t = this.peek();
    if (t.kind === 'ident' && UNSUPPORTED_CLAUSE[t.upper]) this.unsupported(t, UNSUPPORTED_CLAUSE[t.upper]!);
  }

  private nonNegativeInt(): number {
    const t = this.next();
    if (t.kind !== 'number' || !Number.isInteger(t.value)) this.unexpected(t);
    return t.value;
  }

  private selectList(): FieldRef[] | null {
    const fields: FieldRef[] = [];
    for (;;) {
      const t = this.peek();
      if (t.kind === 'punct' && t.text === '(')
        this.unsupported(t, 'A subquery (relationship query on child records)');
      if (t.kind !== 'ident') this.unexpected(t);
      if (t.upper === 'TYPEOF') this.unsupported(t, 'TYPEOF');
      if (t.upper === 'FROM' && fields.length === 0) this.unexpected(t);
      const after = this.peek(1);
      if (after.kind === 'punct' && after.text === '(') {
        if (t.upper === 'COUNT' && this.peek(2).kind === 'punct' && this.peek(2).text === ')') {
          if (fields.length > 0 || (this.peek(3).kind === 'punct' && this.peek(3).text === ',')) {
            this.unsupported(t, 'COUNT() together with other fields');
          }
          this.i += 3;
          return null;
        }
        if (AGGREGATES.has(t.upper)) this.unsupported(t, `Aggregate function ${t.text}(field)`);
        this.unsupported(t, `The function ${t.text}()`);
      }
      fields.push(this.fieldRef());
      if (this.isPunct(',')) {
        this.next();
        continue;
      }
      const t2 = this.peek();
      if (t2.kind === 'ident' && !['FROM'].includes(t2.upper)) {
        // "SELECT Id Foo FROM Lead": an alias (only legal with aggregates) or a typo of FROM
        this.unexpected(t2);
      }
      return fields;
    }
  }

  private fieldRef(): FieldRef {
    const first = this.next();
    if (first.kind !== 'ident') this.unexpected(first);
    const path = [first.text];
    while (this.isPunct('.')) {
      this.next();
      const part = this.next();
      if (part.kind !== 'ident') this.unexpected(part);
      path.push(part.text);
    }
    return { path, pos: first.pos };
  }

  private orderList(): OrderItem[] {
    const items: OrderItem[] = [];
    for (;;) {
      const t = this.peek();
      if (t.kind === 'ident' && this.peek(1).kind === 'punct' && this.peek(1).text === '(') {
        this.unsupported(t, `ORDER BY ${t.text}()`);
      }
      const field = this.fieldRef();
      let desc = false;
      if (this.isKeyword('ASC')) this.next();
      else if (this.isKeyword('DESC')) {
        this.next();
        desc = true;
      }
      // ORDER BY defaults (SOQL reference): ascending, nulls first; DESC puts nulls last.
      let nullsLast = desc;
      if (this.isKeyword('NULLS')) {
        this.next();
        if (this.isKeyword('FIRST')) nullsLast = false;
        else if (this.isKeyword('LAST')) nullsLast = true;
        else this.unexpected();
        this.next();
      }
      items.push({ field, desc, nullsLast });
      if (!this.isPunct(',')) return items;
      this.next();
    }
  }

  /**
   * conditionExpression (SOQL reference): "Client applications must specify parentheses when
   * nesting operators. However, multiple operators of the same type do not need to be nested."
   * So `a AND b OR c` is rejected at the OR, as Salesforce does ("unexpected token: 'OR'");
   * NOT only starts a condition (`a AND NOT b` is rejected; `a AND (NOT b)` is fine).
   */
  private condition(): Condition {
    if (this.isKeyword('NOT')) {
      this.next();
      return { kind: 'not', item: this.simpleCondition() };
    }
    const first = this.simpleCondition();
    const t = this.peek();
    if (t.kind !== 'ident' || (t.upper !== 'AND' && t.upper !== 'OR')) return first;
    const op = t.upper;
    const items = [first];
    while (this.isKeyword(op)) {
      this.next();
      items.push(this.simpleCondition());
    }
    const other = op === 'AND' ? 'OR' : 'AND';
    if (this.isKeyword(other)) this.unexpected();
    return { kind: op === 'AND' ? 'and' : 'or', items };
  }

  private depth = 0;

  private simpleCondition(): Condition {
    if (this.isPunct('(')) {
      const open = this.next();
      if (this.isKeyword('SELECT')) this.unsupported(open, 'A semi-join subquery');
      // bound the recursion so that hostile input gets an error, not a stack overflow
      if (++this.depth > MAX_NESTING) {
        throw queryError(
          'MALFORMED_QUERY',
          this.soql,
          open.pos,
          `parentheses nested deeper than ${MAX_NESTING} levels`,
        );
      }
      const c = this.condition();
      this.expectPunct(')');
      this.depth--;
      return c;
    }
    const t = this.peek();
    // NOT inside an AND/OR chain needs its own parentheses (see condition())
    if (t.kind !== 'ident' || t.upper === 'NOT') this.unexpected(t);
    if (this.peek(1).kind === 'punct' && this.peek(1).text === '(') {
      this.unsupported(t, `The function ${t.text}() in WHERE`);
    }
    const field = this.fieldRef();
    const opTok = this.next();
    if (opTok.kind === 'punct' && ['=', '!=', '<>', '<', '<=', '>', '>='].includes(opTok.text)) {
      const op = (opTok.text === '<>' ? '!=' : opTok.text) as CompareOp;
      return { kind: 'compare', field, op, value: this.literal() };
    }
    if (opTok.kind === 'ident') {
      switch (opTok.upper) {
        case 'LIKE':
          return { kind: 'like', field, pattern: this.literal() };
        case 'IN':
          return { kind: 'in', field, negated: false, values: this.literalList() };
        case 'NOT':
          this.expectKeyword('IN');
          return { kind: 'in', field, negated: true, values: this.literalList() };
        case 'INCLUDES':
        case 'EXCLUDES':
          this.unsupported(opTok, `${opTok.upper} (multi-select picklists)`);
      }
    }
    return this.unexpected(opTok);
  }

  private literalList(): Literal[] {
    const open = this.expectPunct('(');
    if (this.isKeyword('SELECT')) this.unsupported(open, 'A semi-join subquery');
    const values = [this.literal()];
    while (this.isPunct(',')) {
      this.next();
      values.push(this.literal());
    }
    this.expectPunct(')');
    return values;
  }

  private literal(): Literal {
    const t = this.next();
    switch (t.kind) {
      case 'string':
        return { kind: 'string', value: t.value, likeSource: t.likeSource, pos: t.pos };
      case 'number':
        return { kind: 'number', value: t.value, pos: t.pos };
      case 'date':
        return { kind: 'date', value: t.value, pos: t.pos };
      case 'datetime':
        return { kind: 'datetime', value: t.value, pos: t.pos };
      case 'punct': {
        if (t.text === '-' || t.text === '+') {
          const num = this.next();
          if (num.kind !== 'number') this.unexpected(num);
          return { kind: 'number', value: t.text === '-' ? -num.value : num.value, pos: t.pos };
        }
        if (t.text === ':') this.unsupported(t, 'A bind variable');
        return this.unexpected(t);
      }
      case 'ident': {
        if (t.upper === 'NULL') return { kind: 'null', pos: t.pos };
        if (t.upper === 'TRUE' || t.upper === 'FALSE')
          return { kind: 'boolean', value: t.upper === 'TRUE', pos: t.pos };
        if (DATE_LITERALS.has(t.upper)) return { kind: 'dateLiteral', name: t.upper, pos: t.pos };
        if (DATE_N_LITERALS.has(t.upper)) {
          this.expectPunct(':');
          const num = this.next();
          if (num.kind !== 'number' || !Number.isInteger(num.value)) this.unexpected(num);
          return { kind: 'dateLiteral', name: t.upper, n: num.value, pos: t.pos };
        }
        return this.unexpected(t);
      }
      default:
        return this.unexpected(t);
    }
  }
}

const MAX_NESTING = 100;
/** SOQL and SOSL Limits: "SOQL statements can't exceed 100,000 characters" */
export const MAX_SOQL_LENGTH = 100_000;

/** Parses one SOQL statement; throws SalesforceError (MALFORMED_QUERY) on anything else. */
export function parseSoql(soql: string): SelectQuery {
  if (soql.length > MAX_SOQL_LENGTH) {
    throw new SalesforceError(
      'MALFORMED_QUERY',
      `SOQL statements cannot be longer than ${MAX_SOQL_LENGTH} characters`,
    );
  }
  return new Parser(soql).parse();
}
