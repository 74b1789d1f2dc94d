// The decoder a converter replays: records reported (nothing materialised), device sections without a
// registered description described from the vmdesc, every event passed on. Browser-safe.
import type { DecoderEvent } from "../savevm/types.js";
import { StreamDecoder, type StreamDecoderOptions } from "../sections/stream.js";
import { descriptionFromVmdesc } from "../vmstate/from-vmdesc.js";

export function replayDecoder(options: StreamDecoderOptions = {}, event: (e: DecoderEvent) => void): StreamDecoder {
  const userEvent = options.onEvent;
  return new StreamDecoder({
    describe: (_i, _n, entry) => descriptionFromVmdesc(entry),
    ...options,
    materialize: false,
    records: true,
    onEvent: (e) => {
      event(e);
      userEvent?.(e);
    },
  });
}

/** A copy of a record whose byte fields outlive the decoder's window. */
export function copyRecord<R>(r: R): R {
  const o = { ...(r as Record<string, unknown>) };
  for (const k of Object.keys(o)) {
    const v = o[k];
    if (v instanceof Uint8Array) o[k] = v.slice();
  }
  return o as R;
}
