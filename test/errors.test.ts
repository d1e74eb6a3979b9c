import { describe, expect, it } from 'vitest';
import { PersistencyError } from '../src/index.js';

describe('PersistencyError', () => {
  it('gives every Backend error a code, UNKNOWN when the failure carried none', () => {
    expect(new PersistencyError('Backend', 'something failed').code).toBe('UNKNOWN');
    expect(new PersistencyError('Backend', 'disk full', { code: 'SQLITE_FULL' }).code).toBe(
      'SQLITE_FULL',
    );
    // Other kinds carry a code only where there is one.
    expect(new PersistencyError('Closed', 'job j is closed').code).toBeUndefined();
    expect(new PersistencyError('Busy', 'held', { code: 'SQLITE_BUSY' }).code).toBe('SQLITE_BUSY');
  });
});
