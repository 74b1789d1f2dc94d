// vmstream/node: the Node-only entry points: files and Node streams (gunzip, zlib inflate), decoding files with
// the vmdesc read from their end first, the migration transports (TCP, file, stdio), and KernelPool workers as
// worker threads.

export { type ChunkOptions, type ChunkSource, chunksOf, feedDecoder, isGzip, nodeInflate, readHead, readTail } from "./io/node.js";
export { type NodeWorkerOptions, nodeWorkerFactory } from "./kernels/node.js";
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
