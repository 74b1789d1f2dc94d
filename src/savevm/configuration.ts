// The configuration section (wire-format §2.8), described once: the decoder, the encoder and the BER
// converters all walk `configurationDescription` (machine name, then QEMU's subsections with their
// `needed` rules). Browser-safe.
import { VmstreamError } from "../io/errors.js";
import { F } from "../vmstate/fields.js";
import type { State, VMStateDescription } from "../vmstate/types.js";
import { MIGRATION_CAPABILITIES, PEEK_LOOKAHEAD } from "./constants.js";
import { type AtHand, walkAtHand } from "./input-window.js";

/** What a writer says about the configuration (the machine name as text). */
export interface ConfigurationSpec {
  /** Machine type name as sent (QEMU accepts any prefix of its own). */
  readonly machine: string;
  /** `configuration/target-page-bits`. */
  readonly targetPageBits?: number;
  /** `configuration/capabilities` (in 7.2 only x-ignore-shared is validated this way). */
  readonly capabilities?: readonly string[];
  /** `configuration/uuid`. */
  readonly uuid?: Uint8Array;
}

/** Caps on what a configuration section may carry (QEMU uses both counts unchecked as allocation sizes). */
export interface ConfigurationLimits {
  /** Machine name bytes. */
  readonly configName: number;
  /** Entries of `configuration/capabilities`. */
  readonly capabilities: number;
}

const capability: VMStateDescription = {
  name: "capability",
  version: 0,
  fields: [F.custom("name", "capability", 1, (v, name, value) => v.str(name, (value as string | undefined) ?? ""))],
};

/** `configuration/target-page-bits` (v1): be32; kernels handle pages of 1 KiB .. 64 KiB. */
const targetPageBits: VMStateDescription = {
  name: "configuration/target-page-bits",
  version: 1,
  minimumVersion: 1,
  needed: (s) => s.target_page_bits !== undefined,
  fields: [F.uint32("target_page_bits")],
  postLoad(s) {
    const b = s.target_page_bits as number;
    if (b < 10 || b > 16) return `target page bits ${b} outside 10..16`;
  },
};

/** `configuration/uuid` (v1): 16 raw bytes. */
const uuid: VMStateDescription = {
  name: "configuration/uuid",
  version: 1,
  minimumVersion: 1,
  needed: (s) => s.uuid !== undefined,
  fields: [F.buffer("uuid", 16)],
};

/** `configuration/capabilities` (v1): a count, then that many names; the count is capped. */
function capabilities(maxCount: number): VMStateDescription {
  return {
    name: "configuration/capabilities",
    version: 1,
    minimumVersion: 1,
    needed: (s) => s.caps_count !== undefined,
    fields: [
      F.uint32("caps_count"),
      F.validate("caps_count_limit", (s) => {
        if ((s.caps_count as number) > maxCount) return `${s.caps_count as number} capabilities, at most ${maxCount} accepted`;
      }),
      F.structArray("capabilities", capability, { field: "caps_count" }),
    ],
    postLoad(s) {
      for (const c of s.capabilities as State[]) {
        if (!MIGRATION_CAPABILITIES.includes(c.name as string)) return `unknown capability "${c.name as string}"`;
      }
    },
  };
}

/** The "configuration" VMState as sent after the 0x07 byte: be32 name length, the name, then the subsections. */
export function configurationDescription(limits: ConfigurationLimits): VMStateDescription {
  return {
    name: "configuration",
    version: 1,
    fields: [
      F.uint32("len"),
      F.validate("len_limit", (s) => {
        if ((s.len as number) > limits.configName) return `machine name of ${s.len as number} bytes, at most ${limits.configName} accepted`;
      }),
      F.buffer("name", { field: "len" }),
    ],
    subsections: [targetPageBits, capabilities(limits.capabilities), uuid],
  };
}

const utf8 = new TextEncoder();

/** The state `configurationDescription` saves for a spec (the machine name as UTF-8). */
export function configurationState(c: ConfigurationSpec): State {
  const name = utf8.encode(c.machine);
  const s: State = { len: name.length, name };
  if (c.targetPageBits !== undefined) s.target_page_bits = c.targetPageBits;
  if (c.capabilities !== undefined) {
    s.caps_count = c.capabilities.length;
    s.capabilities = c.capabilities.map((n) => ({ name: n }));
  }
  if (c.uuid !== undefined) s.uuid = c.uuid;
  return s;
}

/** The spec of a loaded state. The machine name keeps one character per byte, as QEMU compares it. */
export function configurationSpec(s: State): ConfigurationSpec {
  const name = (s.name as Uint8Array | undefined) ?? new Uint8Array(0); // a zero-length buffer is not visited
  let machine = "";
  for (let i = 0; i < name.length; i++) machine += String.fromCharCode(name[i]!);
  const caps = s.capabilities as State[] | undefined;
  return {
    machine,
    ...(s.target_page_bits !== undefined ? { targetPageBits: s.target_page_bits as number } : {}),
    ...(caps ? { capabilities: caps.map((c) => c.name as string) } : {}),
    ...(s.uuid instanceof Uint8Array ? { uuid: s.uuid.slice() } : {}),
  };
}

/**
 * Read the configuration section at the start of `input` (its 0x07 at byte 0): its state and size, or how many
 * bytes to wait for. The name length is checked before the name is waited for.
 */
export function readConfiguration(input: AtHand, limits: ConfigurationLimits): { state: State; size: number } | { need: number } {
  const { n } = input;
  if (n < 5) return { need: 5 };
  const len = input.reader(1).be32();
  if (len > limits.configName) {
    throw new VmstreamError("LIMIT", "configuration machine name too long", {
      offset: input.offset + 1,
      detail: `${len} > ${limits.configName} (limits.configName)`,
    });
  }
  if (n < 5 + len) return { need: 5 + len };
  const walk = walkAtHand(configurationDescription(limits), input, 1, 0, "configuration");
  if (walk.kind === "fail") throw walk.error.withContext({ section: { idstr: "configuration", id: 0 } });
  if (walk.kind === "need") return { need: n + 1 };
  if (!walk.conclusive) return { need: Math.max(n + 1, walk.end + PEEK_LOOKAHEAD) };
  return { state: walk.state, size: walk.end };
}
