// Change event header bitmaps against a small hand-written schema, values computed by hand.
import { describe, expect, it } from 'vitest';
import {
  decodeBitmapFields,
  encodeBitmap,
  encodeBitmapFields,
} from '../../src/sources/salesforce/pubsub/bitmap.ts';

const name = {
  type: 'record',
  name: 'PersonName',
  fields: [
    { name: 'Salutation', type: ['null', 'string'] },
    { name: 'FirstName', type: ['null', 'string'] },
    { name: 'LastName', type: ['null', 'string'] },
  ],
};
const fields = [
  { name: 'ChangeEventHeader', type: { type: 'record', name: 'H', fields: [] } }, // 0
  { name: 'Name', type: ['null', name] }, // 1
  { name: 'Company', type: ['null', 'string'] }, // 2
  { name: 'Status', type: ['null', 'string'] }, // 3
  { name: 'LastModifiedDate', type: ['null', 'long'] }, // 4
];
// 70 fields: bit 69 needs more than 64 bits
const wide = Array.from({ length: 70 }, (_, i) => ({ name: `F${i}`, type: ['null', 'string'] }));

describe('change event bitmaps', () => {
  it('decodes top-level bits from the least significant bit', () => {
    // 0x18 = 0b11000: bits 3 and 4
    expect(decodeBitmapFields(fields, ['0x18'])).toEqual(['Status', 'LastModifiedDate']);
    // 0x4 = bit 2
    expect(decodeBitmapFields(fields, ['0x4'])).toEqual(['Company']);
    expect(decodeBitmapFields(fields, [])).toEqual([]);
  });

  it('decodes "parentPos-0xBITS" into Parent.Child names', () => {
    // parent at 1 (Name), 0x6 = bits 1 and 2: FirstName, LastName
    expect(decodeBitmapFields(fields, ['0x10', '1-0x6'])).toEqual([
      'LastModifiedDate',
      'Name.FirstName',
      'Name.LastName',
    ]);
  });

  it('handles bitmaps wider than 64 bits', () => {
    // bit 69 and bit 0: 0x200000000000000001
    expect(decodeBitmapFields(wide, ['0x200000000000000001'])).toEqual(['F0', 'F69']);
    expect(encodeBitmap([0, 69])).toBe('0x200000000000000001');
  });

  it('passes field names (the CometD form) through and refuses bits beyond the schema', () => {
    expect(decodeBitmapFields(fields, ['Status'])).toEqual(['Status']);
    expect(() => decodeBitmapFields(fields, ['0x20'])).toThrow(/no field at position 5/);
    expect(() => decodeBitmapFields(fields, ['2-0x1'])).toThrow(/not a compound field/);
  });

  it('encodes what it decodes', () => {
    expect(encodeBitmapFields(fields, ['Status', 'LastModifiedDate', 'Name.FirstName'])).toEqual([
      '0x18',
      '1-0x2',
    ]);
    expect(encodeBitmapFields(fields, [])).toEqual([]);
  });
});
