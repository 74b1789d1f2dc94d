// TEST-ONLY: the one seeded pseudo-random generator of the tests (xorshift32). The same seed gives the same
// sequence on every run and machine, so a failing case can be replayed from its seed.

export class SeededRandom {
  private state: number;

  /** Any integer (its low 32 bits count); 0, which xorshift never leaves, is taken as 1. */
  constructor(seed: number) {
    this.state = seed >>> 0 || 1;
  }

  /** The next value: an unsigned 32-bit integer, never 0. */
  u32(): number {
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return this.u32() % n;
  }

  /** A number in [0, 1). */
  float(): number {
    return this.u32() / 2 ** 32;
  }

  /** A byte: the low 8 bits of the next value. */
  byte(): number {
    return this.u32() & 0xff;
  }

  /** `n` bytes, one value each. */
  bytes(n: number): Uint8Array {
    return this.fill(new Uint8Array(n));
  }

  /** Fill `b` with bytes, one value each; returns `b`. */
  fill(b: Uint8Array): Uint8Array {
    for (let i = 0; i < b.length; i++) b[i] = this.u32() & 0xff;
    return b;
  }

  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
}
