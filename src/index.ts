// vmstream: the browser-safe core, the names users are meant to use (docs/api.md). Node-only entry points are
// in vmstream/node, the QMP client in vmstream/qmp, the v86 embedding in vmstream/v86.

export { AnalyzeDocument, type FormatOptions, formatAnalyzeJson } from "./analyze/analyze-json.js";
// Inspection: analyze-migration.py's document and the dump of a decoded stream.
export { analyzeDecoderOptions, analyzeDocumentOf, dumpLines } from "./analyze/report.js";
export { isBerStream } from "./convert/ber-items.js";
export { deviceSpec, type VmdescChoice } from "./convert/devices.js";
export { berToQemu, berToQemuBytes, type QemuFromBerOptions, type QemuFromBerReport, type QemuFromBerResult } from "./convert/from-ber.js";
export { encodeFromModel, type ModelEncodeOptions } from "./convert/model.js";
// Converters: QEMU -> QEMU through the model, QEMU <-> BER, a new stream from a decoded model.
export {
  type MultifdChannelInput,
  type MultifdChannelReport,
  MultifdJoin,
  type MultifdJoinOptions,
  type MultifdJoinReport,
} from "./convert/multifd-join.js";
export { type MultifdOutput, MultifdSplit, type MultifdSplitOptions, type MultifdSplitReport } from "./convert/multifd-split.js";
export { type ReencodeOptions, type ReencodeReport, type ReencodeResult, reencodeBytes, reencodeStream, StreamConverter } from "./convert/qemu.js";
export { type BerStreamOptions, type BerStreamReport, type BerStreamResult, qemuToBer, qemuToBerBytes, StreamBerConverter } from "./convert/to-ber.js";
export { joinChunks } from "./io/chunks.js";
// Compression streams of multifd channels (zlib, zstd): the interface a host injects (Node: vmstream/node).
export type { StreamCodec, StreamCodecs, StreamCompressor, StreamDecompressor } from "./io/codec.js";
export {
  type ErrorContext,
  formatErrorMessage,
  isVmstreamError,
  type SectionRef,
  VmstreamError,
  type VmstreamErrorCode,
  type VmstreamErrorOptions,
} from "./io/errors.js";
// Bytes: QEMUFile-style reader and writer, errors with offsets, gathered output.
export { ByteReader, type ByteReaderOptions } from "./io/reader.js";
export { ByteWriter, type ByteWriterOptions } from "./io/writer.js";
// Kernels: RAM page work in WebAssembly (or its pure-TypeScript twin), and the layout constants of their calls.
export { createKernels, type KernelOptions, simdSupported } from "./kernels/index.js";
// Every core: worker threads running the kernels on one shared memory (docs/kernels.md, "Every core").
export {
  encodeWindowBytes,
  type ParallelRamDecodeOptions,
  type ParallelRamEncode,
  type RamEncodeResult,
  type RamEncodeSink,
} from "./kernels/parallel-ram.js";
export {
  KernelPool,
  type KernelPoolOptions,
  type PoolWorker,
  sharedKernelMemory,
  splitPages,
  type WorkerEvents,
  type WorkerFactory,
  webWorkerFactory,
} from "./kernels/pool.js";
export {
  type BackendChoice,
  type BackendName,
  BLK,
  DEC,
  DEC_STATUS,
  ENC,
  type Kernels,
  RAM_ENCODE,
  RAM_FLAG,
  SLOT_INSERT,
  XBZRLE_ERR,
} from "./kernels/types.js";
export { POOL_OP } from "./kernels/worker.js";
export {
  type DestinationPages,
  type DestinationProgress,
  type DestinationResult,
  type DestinationStatus,
  MigrationDestination,
  type MigrationDestinationOptions,
  type MigrationPhase,
  receiveMigration,
} from "./migration/destination.js";
export {
  type LiveChannelPort,
  LiveMigrationError,
  type LiveOutcome,
  type LiveRound,
  type LiveSourceOptions,
  type LiveSwitchReason,
  runLiveSource,
} from "./migration/live.js";
export { DiskWorkload, GuestWorkload, type SimulateOptions, type SimulateResult, simulate, type WorkloadOptions } from "./migration/simulate.js";
export {
  type MigrationDevice,
  type MigrationOutcome,
  MigrationSource,
  type MigrationSourceOptions,
  type RoundProgress,
  type SwitchReason,
} from "./migration/source.js";
export type { ConfigurationSpec } from "./savevm/configuration.js";
export { CMD, DEFAULT_LIMITS, type DecoderLimits, MIGRATION_CAPABILITIES, SEC } from "./savevm/constants.js";
export { type DeviceSpec, type EncoderOptions, type EncoderSink, encoderFor, type FramingOptions, framingForMachine, StreamEncoder } from "./savevm/encoder.js";
export type {
  CommandRecord,
  Completeness,
  ConfigurationInfo,
  DecodeResult,
  DecoderEvent,
  DecoderOptions,
  DeviceContext,
  DeviceRegistry,
  DeviceSectionResult,
  DeviceSource,
  FeedResult,
  HandlerContext,
  HandlerFactory,
  MaterializedBytes,
  MaterializeOptions,
  RamOptions,
  SectionHandler,
  SectionHeader,
  SectionInput,
  SectionRecord,
  SectionType,
  ValidationResult,
  ValidationSummary,
  VmdescDescriber,
  VmdescFallback,
  VmdescInfo,
} from "./savevm/types.js";
export type { ByteSource } from "./savevm/verdict.js";
export { BLK_MIG, BLOCK_CHUNK, type BlockRecord } from "./sections/block/format.js";
export type { BlockDeviceResult, BlockResult } from "./sections/block/handler.js";
export type { BlockDeviceSource } from "./sections/block/source.js";
export { BlockWriter } from "./sections/block/writer.js";
export { chainRegistries, type DeviceRegistryOption, registryFromMap, x86Registry } from "./sections/device/registry.js";
export { DIRTY_BITMAP_FLAG, type DirtyBitmapRecord } from "./sections/dirty-bitmap/format.js";
export type { DirtyBitmapInfo, DirtyBitmapResult } from "./sections/dirty-bitmap/handler.js";
export { DirtyBitmapWriter } from "./sections/dirty-bitmap/writer.js";
// Live migration: the source engine (virtual clock and real time), the destination, the workload simulator.
export type { DirtySource, HostBytes, IterativeSection, SectionCounts, SectionPass, SectionProgress, SectionSync } from "./sections/iterative.js";
export { builtinHandlers } from "./sections/kinds.js";
// Section kinds: results, records and writers.
export type { RamBlockData, RamBlockSpec, RamRecord } from "./sections/ram/format.js";
export { type RamBlockProvider, RamBlockResult, type RamPageCounts, type RamResult } from "./sections/ram/handler.js";
export {
  MULTIFD_FLAG,
  MultifdChannelReader,
  MultifdChannelWriter,
  type MultifdCompression,
  type MultifdHeaderSpec,
  type MultifdInit,
  type MultifdPacket,
  type MultifdPacketSpec,
  type MultifdReaderEvent,
  type MultifdReaderOptions,
  multifdHeaderSize,
  multifdInitBytes,
  multifdPagesPerPacket,
  writeMultifdHeader,
} from "./sections/ram/multifd.js";
export type { ChannelOutput, ChannelSink, MultifdPacketJob, MultifdPacketPort, MultifdSourceOptions } from "./sections/ram/multifd-source.js";
export { type PageCache, type RamPassStats, RamWriter, type RamWriterOptions, XbzrleCache } from "./sections/ram/writer.js";
export { HTAB_SHIFT_MAX, HTAB_SHIFT_MIN, type HtabChunk, type HtabItem } from "./sections/spapr-htab/format.js";
export type { HtabResult } from "./sections/spapr-htab/handler.js";
export type { HtabSource } from "./sections/spapr-htab/source.js";
export { HtabWriter } from "./sections/spapr-htab/writer.js";
// Streams: decode (push-style), validate, encode.
export {
  blockOf,
  decodeBytes,
  decodeStream,
  dirtyBitmapOf,
  htabOf,
  ramOf,
  StreamDecoder,
  type StreamDecoderOptions,
  validateBytes,
  validateStream,
} from "./sections/stream.js";
export { BaseVisitor } from "./visitor/base.js";
export { type BerInputOptions, BerInputVisitor, type BerLengths, type BerOutputOptions, BerOutputVisitor } from "./visitor/ber/index.js";
export { JsonInputVisitor, type JsonMode, type JsonValue, JsonVisitor } from "./visitor/json.js";
export { type PrettyOptions, PrettyVisitor } from "./visitor/pretty.js";
export { formatTraceEntry, type TraceEntry, type TraceOptions, TraceVisitor } from "./visitor/trace.js";
export type { Name, ScalarInfo, ScalarType, Visitor } from "./visitor/visitor.js";
export { WireInputVisitor, WireOutputVisitor } from "./visitor/wire.js";
export { x86DeviceForIdstr, x86DeviceList, x86Devices } from "./vmstate/devices/index.js";
export { loadState, saveState, visitState } from "./vmstate/engine.js";
// Device state described once, walked by every visitor.
export { F } from "./vmstate/fields.js";
export { descriptionFromVmdesc, descriptionsFromVmdesc, parseVmdesc, type VmdescLimits } from "./vmstate/from-vmdesc.js";
export { convertLegacy, legacyBytes, opaqueLegacy } from "./vmstate/legacy.js";
export {
  assertSymmetry,
  type Coverage,
  checkSymmetry,
  checkVersions,
  coverageOf,
  descriptionPaths,
  diffTraces,
  firstDifference,
  fromJSON,
  mergeCoverage,
  prettyPrint,
  type SymmetryOptions,
  type SymmetryReport,
  toJSON,
  unexercised,
  type VersionsReport,
} from "./vmstate/symmetry.js";
export type {
  ArrayField,
  BitmapField,
  BufferField,
  Count,
  CustomField,
  Field,
  GTreeField,
  ListField,
  PointerArrayField,
  ScalarField,
  ScalarFieldType,
  State,
  StructArrayField,
  StructField,
  TmpField,
  UnusedField,
  ValidateField,
  VMStateDescription,
} from "./vmstate/types.js";
export type { Vmdesc, VmdescBody, VmdescDevice, VmdescField, VmdescLegacyDevice, VmdescVmstateDevice } from "./vmstate/vmdesc.js";
