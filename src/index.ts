// vmstream: the browser-safe core, the names users are meant to use (docs/api.md). Node-only entry points are
// in vmstream/node, the QMP client in vmstream/qmp, the v86 embedding in vmstream/v86.

// Kernels: RAM page work in WebAssembly (or its pure-TypeScript twin), and the layout constants of their calls.
export { createKernels, simdSupported, type KernelOptions } from "./kernels/index.js";
export { BLK, DEC, DEC_STATUS, ENC, RAM_ENCODE, RAM_FLAG, SLOT_INSERT, XBZRLE_ERR, type BackendChoice, type BackendName, type Kernels } from "./kernels/types.js";

// Bytes: QEMUFile-style reader and writer, errors with offsets, gathered output.
export { ByteReader, type ByteReaderOptions } from "./io/reader.js";
export { ByteWriter, type ByteWriterOptions } from "./io/writer.js";
export { joinChunks } from "./io/chunks.js";
export { formatErrorMessage, isVmstreamError, VmstreamError, type ErrorContext, type SectionRef, type VmstreamErrorCode, type VmstreamErrorOptions } from "./io/errors.js";

// Device state described once, walked by every visitor.
export { F } from "./vmstate/fields.js";
export type {
  ArrayField, BitmapField, BufferField, Count, CustomField, Field, GTreeField, ListField, PointerArrayField, ScalarField, ScalarFieldType, State,
  StructArrayField, StructField, TmpField, UnusedField, ValidateField, VMStateDescription,
} from "./vmstate/types.js";
export { loadState, saveState, visitState } from "./vmstate/engine.js";
export type { Name, ScalarInfo, ScalarType, Visitor } from "./visitor/visitor.js";
export { BaseVisitor } from "./visitor/base.js";
export { WireInputVisitor, WireOutputVisitor } from "./visitor/wire.js";
export { BerInputVisitor, BerOutputVisitor, type BerInputOptions, type BerLengths, type BerOutputOptions } from "./visitor/ber/index.js";
export { PrettyVisitor, type PrettyOptions } from "./visitor/pretty.js";
export { JsonInputVisitor, JsonVisitor, type JsonMode, type JsonValue } from "./visitor/json.js";
export { formatTraceEntry, TraceVisitor, type TraceEntry, type TraceOptions } from "./visitor/trace.js";
export {
  assertSymmetry, checkSymmetry, checkVersions, coverageOf, descriptionPaths, diffTraces, firstDifference, fromJSON, mergeCoverage, prettyPrint,
  toJSON, unexercised, type Coverage, type SymmetryOptions, type SymmetryReport, type VersionsReport,
} from "./vmstate/symmetry.js";
export { convertLegacy, legacyBytes, opaqueLegacy } from "./vmstate/legacy.js";
export { descriptionFromVmdesc, descriptionsFromVmdesc, parseVmdesc, type VmdescLimits } from "./vmstate/from-vmdesc.js";
export type { Vmdesc, VmdescBody, VmdescDevice, VmdescField, VmdescLegacyDevice, VmdescVmstateDevice } from "./vmstate/vmdesc.js";
export { x86DeviceForIdstr, x86DeviceList, x86Devices } from "./vmstate/devices/index.js";

// Streams: decode (push-style), validate, encode.
export { blockOf, decodeBytes, decodeStream, dirtyBitmapOf, htabOf, ramOf, StreamDecoder, validateBytes, validateStream, type StreamDecoderOptions } from "./sections/stream.js";
export type { ByteSource } from "./savevm/verdict.js";
export type {
  CommandRecord, Completeness, ConfigurationInfo, DecodeResult, DecoderEvent, DecoderOptions, DeviceContext, DeviceRegistry, DeviceSectionResult,
  DeviceSource, FeedResult, HandlerContext, HandlerFactory, MaterializeOptions, RamOptions, SectionHandler, SectionHeader, SectionInput, SectionRecord,
  SectionType, ValidationResult, ValidationSummary, VmdescDescriber, VmdescFallback, VmdescInfo,
} from "./savevm/types.js";
export { CMD, DEFAULT_LIMITS, MIGRATION_CAPABILITIES, SEC, type DecoderLimits } from "./savevm/constants.js";
export type { ConfigurationSpec } from "./savevm/configuration.js";
export { encoderFor, framingForMachine, StreamEncoder, type DeviceSpec, type EncoderOptions, type EncoderSink, type FramingOptions } from "./savevm/encoder.js";
export { chainRegistries, registryFromMap, x86Registry, type DeviceRegistryOption } from "./sections/device/registry.js";
export { builtinHandlers } from "./sections/kinds.js";

// Section kinds: results, records and writers.
export type { RamBlockData, RamBlockSpec, RamRecord } from "./sections/ram/format.js";
export { RamBlockResult, type RamBlockProvider, type RamPageCounts, type RamResult } from "./sections/ram/handler.js";
export { RamWriter, XbzrleCache, type PageCache, type RamPassStats, type RamWriterOptions } from "./sections/ram/writer.js";
export { BLK_MIG, BLOCK_CHUNK, type BlockRecord } from "./sections/block/format.js";
export type { BlockDeviceResult, BlockResult } from "./sections/block/handler.js";
export { BlockWriter } from "./sections/block/writer.js";
export { HTAB_SHIFT_MAX, HTAB_SHIFT_MIN, type HtabChunk, type HtabItem } from "./sections/spapr-htab/format.js";
export type { HtabResult } from "./sections/spapr-htab/handler.js";
export { HtabWriter } from "./sections/spapr-htab/writer.js";
export { DIRTY_BITMAP_FLAG, type DirtyBitmapRecord } from "./sections/dirty-bitmap/format.js";
export type { DirtyBitmapInfo, DirtyBitmapResult } from "./sections/dirty-bitmap/handler.js";
export { DirtyBitmapWriter } from "./sections/dirty-bitmap/writer.js";

// Converters: QEMU -> QEMU through the model, QEMU <-> BER, a new stream from a decoded model.
export { reencodeBytes, reencodeStream, StreamConverter, type ReencodeOptions, type ReencodeReport, type ReencodeResult } from "./convert/qemu.js";
export { qemuToBer, qemuToBerBytes, StreamBerConverter, type BerStreamOptions, type BerStreamReport, type BerStreamResult } from "./convert/to-ber.js";
export { berToQemu, berToQemuBytes, type QemuFromBerOptions, type QemuFromBerReport, type QemuFromBerResult } from "./convert/from-ber.js";
export { isBerStream } from "./convert/ber-items.js";
export { deviceSpec, type VmdescChoice } from "./convert/devices.js";
export { encodeFromModel, type ModelEncodeOptions } from "./convert/model.js";

// Live migration: the source engine (virtual clock and real time), the destination, the workload simulator.
export type { DirtySource, HostBytes, IterativeSection, SectionCounts, SectionPass, SectionProgress, SectionSync } from "./sections/iterative.js";
export type { BlockDeviceSource } from "./sections/block/source.js";
export type { HtabSource } from "./sections/spapr-htab/source.js";
export { MigrationSource, type MigrationDevice, type MigrationOutcome, type MigrationSourceOptions, type RoundProgress, type SwitchReason } from "./migration/source.js";
export { LiveMigrationError, runLiveSource, type LiveOutcome, type LiveRound, type LiveSourceOptions, type LiveSwitchReason } from "./migration/live.js";
export {
  MigrationDestination, receiveMigration, type DestinationPages, type DestinationProgress, type DestinationResult, type DestinationStatus,
  type MigrationDestinationOptions, type MigrationPhase,
} from "./migration/destination.js";
export { DiskWorkload, GuestWorkload, simulate, type SimulateOptions, type SimulateResult, type WorkloadOptions } from "./migration/simulate.js";

// Inspection: analyze-migration.py's document and the dump of a decoded stream.
export { analyzeDecoderOptions, analyzeDocumentOf, dumpLines } from "./analyze/report.js";
export { AnalyzeDocument, formatAnalyzeJson, type FormatOptions } from "./analyze/analyze-json.js";
