// The contract every kernel backend (wasm-simd, wasm-scalar, js) fulfils, byte for byte: numbers in (pointers
// into one linear memory, counts, flags), bitmaps in little-endian bit order (page i = bit (i & 7) of byte
// (i >> 3), exactly ceil(n / 8) bytes, bits past n written 0). docs/kernels.md, "The contract".

export type BackendName = "wasm-simd" | "wasm-scalar" | "js";
export type BackendChoice = "auto" | BackendName;

/** Record flags of QEMU's RAM section (wire-format §5.1). */
export const RAM_FLAG = {
  ZERO: 0x02,
  MEM_SIZE: 0x04,
  PAGE: 0x08,
  EOS: 0x10,
  CONTINUE: 0x20,
  XBZRLE: 0x40,
  HOOK: 0x80,
  COMPRESS_PAGE: 0x100,
} as const;

/** `ramEncode` option bits. */
export const RAM_ENCODE = {
  /** Detect all-zero pages and send them as ZERO records. */
  ZERO_DETECT: 1,
  /** The last page record on this stream named this block: the first record may use CONTINUE. */
  CONTINUE: 2,
} as const;

/** Slot map entry bit: send the page normally, then copy it into the slot (XBZRLE cache insert). */
export const SLOT_INSERT = 0x8000_0000;

/** Layout of the u32 state array `ramEncode` writes (index names). */
export const ENC = {
  NEXT_PAGE: 0, // first page not yet considered (== endPage when the range is done)
  BYTES: 1, // bytes written to the output window
  ZERO: 2, // ZERO records written
  NORMAL: 3, // PAGE records written
  XBZRLE: 4, // XBZRLE records written
  UNCHANGED: 5, // pages skipped because XBZRLE found them unchanged against the cache
  OVERFLOW: 6, // XBZRLE attempts that overflowed and went out as PAGE
  CONTINUE: 7, // 1 when the last record written named/continued this block (feed back as RAM_ENCODE.CONTINUE)
  XBZRLE_BYTES: 8, // encoded XBZRLE payload bytes (without record headers)
  SIZE: 9,
} as const;

/** Layout of one entry of the block table `ramDecode` reads (u32 words, 8 per entry). */
export const BLK = {
  NAME_PTR: 0, // idstr bytes in memory
  NAME_LEN: 1, // 1..255 (0 is accepted as a name too: QEMU writes RAM block names with a plain u8 length)
  BASE: 2, // block bytes in memory, or 0 = not materialised (records are validated and counted, not applied)
  LEN_LO: 3, // used_length, low 32 bits
  LEN_HI: 4, // used_length, high 32 bits, of a block that is not materialised (BASE = 0)
  /**
   * Word 4 of a materialised block (BASE != 0, so used_length < 4 GiB): 0, or the address of its
   * written-page bitmap, ceil(pages / 8) bytes: bit i set = page i may hold non-zero bytes, clear = page i
   * is known to be all zero (the caller starts with a cleared bitmap over a zeroed block). A ZERO record with
   * fill 0 on a page whose bit is clear does not read the page (on fresh memory that read alone costs a
   * page fault per page); PAGE, XBZRLE and ZERO with another fill set the bit. 0 = no bitmap: every ZERO
   * record checks the page.
   */
  WRITTEN: 4,
  ZERO: 5, // counters the kernel increments: ZERO records applied to this block
  NORMAL: 6, // PAGE records
  XBZRLE: 7, // XBZRLE records
  WORDS: 8,
} as const;

/** Layout of the u32 state array `ramDecode` reads and writes. */
export const DEC = {
  BLOCK: 0, // in/out: index of the current block for CONTINUE, 0xFFFFFFFF = none yet
  CONSUMED: 1, // out: bytes of the input window consumed (whole records only)
  RECORDS: 2, // out: records consumed in this call (EOS counted)
  ERR_AT: 3, // out: offset in the window of the record that stopped the call (status OTHER or error)
  HDR_HI: 4, // out: the be64 header of that record, high and low 32 bits
  HDR_LO: 5,
  SIZE: 6,
} as const;

/** `ramDecode` return values. Errors are negative; the state says where. */
export const DEC_STATUS = {
  NEED_MORE: 0, // every complete record was consumed; the rest of the window is a partial record
  EOS: 1, // consumed up to and including an EOS record
  OTHER: 2, // stopped before a record the kernel does not apply (MEM_SIZE, COMPRESS_PAGE, HOOK, unknown flags)
  ERR_UNKNOWN_BLOCK: -1,
  ERR_NO_BLOCK: -2, // CONTINUE before any block was named
  ERR_OFFSET: -3, // page offset + page size > block used_length
  ERR_XBZRLE_ENCODING: -4, // encoding byte != 0x01
  ERR_XBZRLE_LENGTH: -5, // XBZRLE length > page size
  ERR_XBZRLE_DATA: -6, // XBZRLE data malformed (see xbzrleDecode)
} as const;

/** The arguments of `Kernels.ramEncode` (documented there), shared by the backends. */
export type RamEncodeArgs = [
  blockPtr: number,
  pageSize: number,
  firstPage: number,
  endPage: number,
  sendMapPtr: number,
  slotMapPtr: number,
  cachePtr: number,
  namePtr: number,
  nameLen: number,
  outPtr: number,
  outCap: number,
  options: number,
  statePtr: number,
];

/** `xbzrleDecode` error codes (negative returns). The page is left untouched on any error. */
export const XBZRLE_ERR = {
  TRUNCATED: -1, // a length or run needs more bytes than remain
  BAD_ULEB: -2, // a two-byte length whose second byte has bit 7 set
  ZERO_RUN: -3, // a zero-length zero run after the first pair, or a zero-length non-zero run
  PAST_PAGE: -4, // a run ends past the page
} as const;

export interface Kernels {
  readonly backend: BackendName;
  /** The linear memory every pointer refers to. */
  readonly memory: WebAssembly.Memory;
  /** Bytes of `memory`, rebuilt after `memory.grow` (read it again after any call that may grow). */
  readonly u8: Uint8Array;
  /** A DataView over `memory`, rebuilt after growth like `u8`. */
  readonly view: DataView;

  /**
   * Reserve `bytes` in memory (grows it when needed), aligned to `align` (a power of two, default 4096). With
   * `zeroed`, the region reads as zero; bytes the allocator knows to be zero (never handed out, or given back
   * clean) are not written, so the system does not commit their pages.
   */
  alloc(bytes: number, align?: number, zeroed?: boolean): number;
  /** Give back a region from `alloc`; `clean`: every byte of it is zero (a later zeroed alloc skips it). */
  free(ptr: number, clean?: boolean): void;

  /**
   * Which of `pageCount` pages starting at `ptr` are all zero: bit set = zero page. Branch-free
   * per page (OR of every word, one test). `pageSize` is a power of two, >= 64. Returns the
   * number of zero pages.
   */
  zeroPages(ptr: number, pageCount: number, bitmapPtr: number, pageSize?: number): number;

  /**
   * Which pages at `ptr` differ from the shadow copy at `shadowPtr`: bit set = changed. With
   * `refresh`, each changed page is copied into the shadow, so afterwards shadow == RAM. Returns
   * the number of changed pages.
   */
  changedPages(ptr: number, shadowPtr: number, pageCount: number, bitmapPtr: number, refresh: boolean, pageSize?: number): number;

  /**
   * QEMU 7.2's XBZRLE encoding of the page at `newPtr` against `oldPtr` into `outPtr`
   * (wire-format §6.2, same three overflow tests). Returns the encoded length, 0 when the pages
   * are equal, -1 when the encoding would exceed `limit` bytes. Never writes past outPtr+limit.
   */
  xbzrleEncode(oldPtr: number, newPtr: number, outPtr: number, limit: number, pageSize?: number): number;

  /**
   * Apply `len` bytes of XBZRLE data at `srcPtr` onto the page at `pagePtr` with QEMU's decoder
   * checks (§6.3). Returns the page bytes covered (the end of the last run), or an XBZRLE_ERR
   * code; on error the page is left untouched.
   */
  xbzrleDecode(srcPtr: number, len: number, pagePtr: number, pageSize?: number): number;

  /**
   * Write QEMU RAM page records for block pages [firstPage, endPage) into the output window
   * [outPtr, outPtr+outCap), in page order, in one call:
   *  - pages considered: those whose bit is set in `sendMapPtr` (a bitmap over the whole block,
   *    bit i = page i; bits of pages handled are cleared), or every page when `sendMapPtr` is 0;
   *  - per page: zero (with RAM_ENCODE.ZERO_DETECT) -> ZERO record with fill 0 (and when the
   *    page has a cache slot, insert or not, the slot is zeroed: the destination now holds a zero
   *    page, and later deltas must be computed against that); else with a slot
   *    (`slotMapPtr` != 0, u32 per block page: 0 = no slot, k = slot k-1, k|SLOT_INSERT = insert
   *    into slot k-1) that is not an insert: XBZRLE against the slot (limit = page size):
   *    0 -> no record (UNCHANGED), -1 -> PAGE (OVERFLOW), else an XBZRLE record; then the page
   *    is copied into its slot (for inserts too); else a PAGE record. Slot k is at
   *    cachePtr + k * pageSize.
   *  - record layout: be64 (offset | flags) with CONTINUE when the previous record on the stream
   *    named this block; otherwise u8 nameLen + name; then ZERO: u8 0; PAGE: page bytes;
   *    XBZRLE: u8 1, be16 len, data.
   * Stops before a page that would be considered when fewer than 8 + 1 + 255 + 3 + pageSize bytes
   * remain in the window. Writes ENC.SIZE u32s at `statePtr`; returns the bytes written. An
   * overflowed XBZRLE page counts in OVERFLOW and NORMAL. `pageSize` >= 1024 (the flags need the
   * low bits of the header); cache slots must lie inside memory.
   */
  ramEncode(...args: RamEncodeArgs): number;

  /**
   * Parse RAM records from the window [inPtr, inPtr+inLen) and apply ZERO, PAGE and XBZRLE
   * records to the blocks of the table at `tablePtr` (`blockCount` entries of BLK.WORDS u32s),
   * every offset checked against the block's used_length. Stops at the end of the window
   * (NEED_MORE, a partial record is left unconsumed), after an EOS record (EOS), before a record
   * it does not apply (OTHER) or on an error (negative). See DEC and DEC_STATUS.
   *  - EOS is a header of exactly 0x10; anything else with the EOS bit is OTHER (the caller decides).
   *  - NEED_MORE: ERR_AT = CONSUMED and HDR = 0. EOS: ERR_AT = the EOS record's offset, HDR = 0x10.
   *  - The current block (DEC.BLOCK) changes only when a record is consumed whole; an index
   *    >= blockCount means "none". Checks run in the order header, flags, block name, offset,
   *    body, so an error visible in a partial record is reported at once; the outcome never
   *    depends on where the input was split.
   *  - Counters count records, including ZERO records whose write was skipped (page already zero).
   */
  ramDecode(inPtr: number, inLen: number, tablePtr: number, blockCount: number, pageSize: number, statePtr: number): number;

  /** Byte-swap `count` u16/u32/u64 values at `ptr` in place. */
  bswap16(ptr: number, count: number): void;
  bswap32(ptr: number, count: number): void;
  bswap64(ptr: number, count: number): void;

  /** Copy `length` bytes from `srcPtr` to `dstPtr`; the ranges may overlap (memmove). */
  copy(dstPtr: number, srcPtr: number, length: number): void;

  /**
   * Copy `count` pages listed as (dstPtr, srcPtr) little-endian u32 pairs at `listPtr`, `pageSize` bytes each,
   * one after the other in list order (each as `copy`): the page data of a multifd packet into its RAM block.
   */
  copyPages(listPtr: number, count: number, pageSize?: number): void;
}
