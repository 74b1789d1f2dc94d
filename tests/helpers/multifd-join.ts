// TEST-ONLY: a multifd migration's connections (main stream first, then the channels) joined by MultifdJoin as
// sockets would feed it: a random connection that may be read gets its next random piece. Throws when an input
// is left waiting (the join deadlocked).
import { MultifdJoin } from "../../src/convert/multifd-join.js";
import { nodeStreamCodecs } from "../../src/io/codecs-node.js";
import { concat } from "./bytes.js";
import type { SeededRandom } from "./random.js";

export function joinConnections(connections: readonly Uint8Array[], rnd: SeededRandom): Uint8Array {
  const j = new MultifdJoin({ codecs: nodeStreamCodecs });
  const result: Uint8Array[] = [];
  try {
    const inputs = connections.map((bytes, i) => ({ bytes, at: 0, conn: i === 0 ? undefined : j.channel() }));
    for (;;) {
      const ready = inputs.filter((x) => x.at < x.bytes.length && !(x.conn ? x.conn.waiting : j.mainWaiting));
      if (ready.length === 0) break;
      const x = rnd.pick(ready);
      const piece = x.bytes.subarray(x.at, x.at + 1 + rnd.int(300_000));
      x.at += piece.length;
      if (x.conn) {
        x.conn.push(piece);
        if (x.at === x.bytes.length) x.conn.end();
      } else j.pushMain(piece);
      result.push(...j.output());
    }
    const left = inputs.filter((x) => x.at < x.bytes.length).length;
    if (left > 0) throw new Error(`${left} inputs left waiting`);
    result.push(...j.end().chunks);
    return concat(result);
  } finally {
    j.dispose();
  }
}
