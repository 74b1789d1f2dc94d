// The "spapr/htab" section's items (sPAPR hash page table, wire-format §8): every payload starts with a be32
// header (0xFFFFFFFF no HPT, a shift = a table of 2^shift bytes, 0 = chunks follow); a chunk is be32 index,
// be16 n_valid, be16 n_invalid and the valid 16-byte HPTEs; (0, 0, 0) ends the chunks. Browser-safe.

export const HTAB_SHIFT_MIN = 18;
export const HTAB_SHIFT_MAX = 46;
/** Bytes of one hash page table entry. */
export const HPTE_BYTES = 16;
/** The header of a section of a guest without a hash page table (radix). */
export const NO_HPT = 0xffffffff;

/** One spapr/htab chunk. */
export interface HtabChunk {
  readonly index: number;
  readonly nValid: number;
  readonly nInvalid: number;
  /** 16 * nValid bytes of HPTEs (guest big-endian format). */
  readonly hptes: Uint8Array;
}

/** One item of a spapr/htab payload as it travels. */
export type HtabItem = { readonly kind: "header"; readonly value: number } | ({ readonly kind: "chunk" } & HtabChunk) | { readonly kind: "end" };
