// vmstream/node: the Node-only entry points: files and Node streams (gunzip, zlib inflate), decoding files with
// the vmdesc read from their end first, and the migration transports (TCP, file, stdio).
export { chunksOf, feedDecoder, isGzip, nodeInflate, readHead, readTail, type ChunkOptions, type ChunkSource } from "./io/node.js";
export { decodeFile, decodeNodeStream, readVmdescTrailer, validateFile, validateNodeStream, type NodeDecodeOptions } from "./sections/node.js";
export {
  connectTcp, DEFAULT_HOST, formatEndpoint, listenTcp, openInput, openOutput, parseEndpoint, StreamWriter, type Endpoint, type InputOpen,
  type OpenInputOptions, type OpenOutputOptions, type OutputOpen, type TcpListener,
} from "./migration/transport.js";
