// vmstream/node: the Node-only entry points: files and Node streams (gunzip, zlib inflate), the multifd stream
// codecs (zlib, zstd), decoding files with the vmdesc read from their end first, the migration transports (TCP,
// file, stdio) with the connections of a multifd migration, and KernelPool workers as worker threads.
export { nodeStreamCodecs, nodeZlibCodec, zstdUnavailable } from "./io/codecs-node.js";
export { type ChunkOptions, type ChunkSource, chunksOf, feedDecoder, isGzip, nodeInflate, readHead, readTail } from "./io/node.js";
export { type NodeWorkerOptions, nodeWorkerFactory } from "./kernels/node.js";
export { IncomingMigration, type IncomingOptions } from "./migration/incoming.js";
export { MultifdConnections, runLiveSourceTcp, type TcpTarget } from "./migration/multifd-out.js";
export { MultifdChannelWorkers, type MultifdChannelWorkersOptions } from "./migration/multifd-workers.js";
export {
  connectTcp,
  DEFAULT_HOST,
  type Endpoint,
  formatEndpoint,
  type InputOpen,
  listenTcp,
  type OpenInputOptions,
  type OpenOutputOptions,
  type OutputOpen,
  openInput,
  openOutput,
  parseEndpoint,
  StreamWriter,
  type TcpListener,
} from "./migration/transport.js";
export { decodeFile, decodeNodeStream, type NodeDecodeOptions, readVmdescTrailer, validateFile, validateNodeStream } from "./sections/node.js";
