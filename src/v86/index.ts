// vmstream/v86: embed vmstream in the v86 emulator (Node). v86 is an optional peer dependency, loaded on demand.

export * from "./adapter.js";
export * from "./guest.js";
export * from "./migrate.js";
export * from "./snapshot.js";
