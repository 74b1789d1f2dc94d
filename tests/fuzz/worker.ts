// The fuzz worker thread: makes the inputs of a range of cases (or takes the given ones) and runs them through one
// target, publishing each input in shared memory before it runs, so that the parent can save the case that hangs
// or kills this thread. Findings that are exceptions are posted back. Protocol: fuzz.ts.
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import { qemuToBerBytes } from "../../src/convert/to-ber.js";
import { nodeInflate } from "../../src/io/node.js";
import { createKernels } from "../../src/kernels/index.js";
import type { Kernels } from "../../src/kernels/types.js";
import { SeededRandom } from "../helpers/random.js";
import { type CaseSlot, caseSeed, ORIGINS, type WorkerJob, type WorkerMessage } from "./fuzz.js";
import { generate } from "./generators.js";
import { mutateInput } from "./mutations.js";
import type { Seeds } from "./seeds.js";
import { TARGETS, verdictOf } from "./targets.js";

/** Kernels whose memory grew past this are replaced (wasm memory never shrinks; later cases would inherit it). */
const KERNEL_MEMORY_RESET = 256 << 20;

/** The input of case `rng`: a seed mutated, a generated stream, or a generated stream mutated; `origin`: ORIGINS. */
function makeInput(seeds: Seeds, input: "qemu" | "ber", rng: SeededRandom, muted: readonly string[]): { bytes: Uint8Array; origin: number } {
  const pool = seeds[input];
  const roll = rng.int(10);
  const generated = roll < 3 ? generate(rng.u32(), muted) : undefined;
  if (generated) {
    let bytes = generated.bytes;
    const origin = ORIGINS.indexOf(generated.generator);
    if (input === "ber") {
      try {
        bytes = qemuToBerBytes(bytes, { decode: { inflate: nodeInflate } });
      } catch {
        return { bytes: mutateInput(rng.pick(pool), rng.pick(pool), rng), origin: 0 };
      }
    }
    return { bytes: roll === 0 ? mutateInput(bytes, rng.pick(pool), rng) : bytes, origin };
  }
  return { bytes: mutateInput(rng.pick(pool), rng.pick(pool), rng), origin: 0 };
}

function main(job: WorkerJob): void {
  const slot: CaseSlot = { ctrl: new Int32Array(job.shared, 0, 4), started: new Float64Array(job.shared, 16, 1), data: new Uint8Array(job.shared, 32) };
  const target = TARGETS[job.target]!;
  let kernels: Kernels = createKernels();
  const caseDir = join(job.tmp, `w${job.from}`);
  let dirUsed = false;
  const ctx = {
    get kernels() {
      return kernels;
    },
    dir: () => ((dirUsed = true), caseDir),
  };
  const post = (m: WorkerMessage): void => parentPort!.postMessage(m);
  let i = job.from;
  for (; i < job.to && Date.now() < job.deadline; i++) {
    const rng = new SeededRandom(caseSeed(job.seed, i));
    const { bytes, origin } = job.inputs ? { bytes: job.inputs[i]!, origin: 0 } : makeInput(job.seeds, target.input, rng, job.muted);
    const stored = Math.min(bytes.length, slot.data.length);
    slot.data.set(bytes.subarray(0, stored));
    Atomics.store(slot.ctrl, 2, bytes.length);
    Atomics.store(slot.ctrl, 3, origin);
    slot.started[0] = Date.now();
    Atomics.store(slot.ctrl, 0, i);
    let error: unknown;
    try {
      target.run(bytes, rng, ctx);
    } catch (e) {
      error = e;
    }
    Atomics.store(slot.ctrl, 0, -1);
    Atomics.add(slot.ctrl, 1, 1);
    const verdict = verdictOf(error);
    if (job.inputs) post({ type: "verdict", index: i, verdict });
    else if (!verdict.ok) post({ type: "finding", index: i, kind: verdict.kind, message: verdict.message, bytes, origin: ORIGINS[origin]! });
    if (dirUsed) {
      rmSync(caseDir, { recursive: true, force: true });
      dirUsed = false;
    }
    if (kernels.memory.buffer.byteLength > KERNEL_MEMORY_RESET) kernels = createKernels();
  }
  post({ type: "done", next: i });
}

mkdirSync((workerData as WorkerJob).tmp, { recursive: true });
main(workerData as WorkerJob);
