// Job id → file name: the mapping is safe, injective and reversible.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jobFileStem, jobIdFromStem, MAX_STEM_BYTES } from '../src/paths.js';

const stem = (id: string) => {
  const r = jobFileStem(id);
  if (!r.ok) throw r.error;
  return r.stem;
};

describe('jobFileStem', () => {
  it.each([
    ['tenant-42', 'tenant-42'],
    ['a_b', 'a_b'],
    ['..', '%2E%2E'],
    ['../etc/passwd', '%2E%2E%2Fetc%2Fpasswd'],
    ['a\\b', 'a%5Cb'],
    ['x\0y', 'x%00y'],
    ['file:x?mode=ro', 'file%3Ax%3Fmode%3Dro'],
    ['100%', '100%25'],
    ['é', '%C3%A9'],
    ['CON', '%43ON'],
    ['nul', '%6Eul'],
    ['com1', '%63om1'],
    ['CONSOLE', 'CONSOLE'],
  ])('%j → %s', (id, expected) => {
    expect(stem(id)).toBe(expected);
    expect(jobIdFromStem(expected)).toBe(id);
  });

  it('refuses what cannot be stored safely', () => {
    for (const bad of ['', 'x'.repeat(MAX_STEM_BYTES + 1), '\ud800', 'é'.repeat(50), 7, null]) {
      const r = jobFileStem(bad);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.kind).toBe('InvalidArgument');
    }
  });

  it('is reversible and injective for any well-formed id, and never names a path', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 30 }),
        fc.string({ maxLength: 30 }),
        (a, b) => {
          const ra = jobFileStem(a);
          const rb = jobFileStem(b);
          if (ra.ok) {
            expect(ra.stem).toMatch(/^[A-Za-z0-9_%-]+$/);
            expect(jobIdFromStem(ra.stem)).toBe(a);
          }
          if (ra.ok && rb.ok && a !== b) expect(ra.stem).not.toBe(rb.stem);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('does not claim files it did not name', () => {
    for (const name of ['CON', 'a.b', '%zz', '%2e', 'x y', ''])
      expect(jobIdFromStem(name)).toBeUndefined();
  });
});
