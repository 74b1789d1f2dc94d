// vmstream/io: the browser-safe byte layer (QEMUFile). Node adapters live in their own modules and are
// not re-exported here.
export {
  VmstreamError,
  isVmstreamError,
  eofError,
  formatErrorMessage,
  type ErrorContext,
  type SectionRef,
  type VmstreamErrorCode,
  type VmstreamErrorOptions,
} from "./errors.js";
export { ByteWriter, GatherWriter, type ByteWriterOptions } from "./writer.js";
export { ByteReader, type ByteReaderOptions } from "./reader.js";
