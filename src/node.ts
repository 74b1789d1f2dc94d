// vmstream/node: the Node-only entry points (files, Node streams, gunzip, zlib inflate).
export * from "./io/node.js";
export * from "./sections/node.js";
export * from "./migration/transport.js";
