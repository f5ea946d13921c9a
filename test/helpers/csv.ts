/**
 * A strict RFC 4180 CSV parser for tests: records end in CRLF, fields are
 * separated by commas, a field holding a quote, comma, CR or LF must be
 * quoted, and a quote inside a quoted field is doubled. Anything else (a
 * bare LF or CR, a quote inside an unquoted field, text after a closing
 * quote, an unterminated quote, records of different lengths) throws, so
 * what passes here passes any conforming reader.
 */

/** Parses `text` into records of fields; the last record may end with or without CRLF. */
export function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let i = 0;
  const n = text.length;
  const fail = (why: string): never => {
    throw new Error(`CSV: ${why} at offset ${i} (record ${records.length + 1})`);
  };
  if (n === 0) return records;
  for (;;) {
    // One field.
    let field = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= n) fail('unterminated quoted field');
        const c = text[i]!;
        if (c === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += c;
        i++;
      }
    } else {
      const start = i;
      while (i < n && text[i] !== ',' && text[i] !== '\r' && text[i] !== '\n') {
        if (text[i] === '"') fail('a quote inside an unquoted field');
        i++;
      }
      field = text.slice(start, i);
    }
    record.push(field);
    // What follows a field: a comma, CRLF, or the end.
    if (i >= n) {
      records.push(record);
      break;
    }
    const c = text[i];
    if (c === ',') {
      i++;
      continue;
    }
    if (c === '\r' && text[i + 1] === '\n') {
      i += 2;
      records.push(record);
      record = [];
      if (i >= n) break;
      continue;
    }
    fail(
      c === '\n' || c === '\r'
        ? 'a line break that is not CRLF'
        : `unexpected ${JSON.stringify(c)} after a field`,
    );
  }
  const width = records[0]!.length;
  records.forEach((r, k) => {
    if (r.length !== width)
      throw new Error(`CSV: record ${k + 1} has ${r.length} fields, the header ${width}`);
  });
  return records;
}

/** Records as objects keyed by the header row. */
export function csvObjects(text: string): Record<string, string>[] {
  const [header, ...rows] = parseCsv(text);
  if (!header) return [];
  return rows.map((r) => Object.fromEntries(header.map((h, k) => [h, r[k]!])));
}
