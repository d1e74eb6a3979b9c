/*
 * What one message can carry (found by a review: a batch over 2 GiB grew its frame to a
 * buffer of exactly 2^32 bytes, which Node 20's postMessage detaches and never delivers, so
 * the batch vanished without an event and every later reply went to the wrong request;
 * from other sizes the doubling overshot V8's limit and a valid batch was refused). A
 * buffer grows to the limit at most; a record that would pass it goes into a frame of its
 * own, and one too large even for that is refused with nothing of it left in the frame.
 * Shown with a small limit; the real one is MAX_MESSAGE_BYTES.
 */
import { describe, expect, it } from 'vitest';
import { Refused } from '../src/checks.js';
import { ByteWriter, MAX_MESSAGE_BYTES, MessageTooLarge } from '../src/protocol/bytes.js';
import { TurnFrame } from '../src/turn-frame.js';

/** A turn's frames of at most 1,000 bytes, and the bytes of each frame sent. */
function smallFrames(): { frame: TurnFrame; sent: number[][] } {
  const sent: number[][] = [];
  const frame: TurnFrame = new TurnFrame(
    () => {
      const taken = frame.take();
      if (taken !== undefined) sent.push([...taken[0]]);
    },
    () => false,
    undefined,
    1_000,
  );
  return { frame, sent };
}

describe('a message at its limit', () => {
  it('is one byte under 2^32', () => {
    expect(MAX_MESSAGE_BYTES).toBe(2 ** 32 - 1);
  });

  it('a writer grows to its limit at most, and refuses to pass it', () => {
    const w = new ByteWriter(256, false, 1_000);
    w.bytes(new Uint8Array(600).fill(1));
    expect(w.buf.length).toBe(1_000); // not 1,024
    w.bytes(new Uint8Array(400).fill(2));
    expect(w.pos).toBe(1_000);
    expect(() => w.u8(3)).toThrow(MessageTooLarge);
    expect(w.pos).toBe(1_000);
  });

  it('a record that would pass the limit goes in a frame of its own, after the frame so far', () => {
    const { frame, sent } = smallFrames();
    frame.write((w) => w.bytes(new Uint8Array(600).fill(1)));
    const w = frame.write((w) => w.bytes(new Uint8Array(600).fill(2)));
    expect(sent).toEqual([new Array(600).fill(1)]); // the first record went alone
    expect(w.pos).toBe(600); // the second is all the new frame holds
    frame.write((w) => w.bytes(new Uint8Array(300).fill(3)));
    expect(w.pos).toBe(900);
  });

  it('a record too large for a frame of its own is Refused, and the frame keeps what it had', () => {
    const { frame, sent } = smallFrames();
    frame.write((w) => w.bytes(new Uint8Array(10).fill(1)));
    expect(() => frame.write((w) => w.bytes(new Uint8Array(1_001)))).toThrow(Refused);
    expect(sent).toEqual([new Array(10).fill(1)]); // sent before the record was tried alone
    const fresh = frame.write((w) => w.u8(7));
    expect(fresh.pos).toBe(1); // a new frame: the 10 bytes went
    // Another error is not a size: it is thrown as it is, the frame untouched.
    expect(() =>
      frame.write((w) => {
        w.u8(9);
        throw new TypeError('a getter threw');
      }),
    ).toThrow(TypeError);
    expect(fresh.pos).toBe(1);
  });
});
