// TEST-ONLY: preloaded with `node --import` into a child process; prints "peak-rss-kib N" on stderr as the process
// exits: the peak resident set of this process alone (VmHWM; getrusage's maxRSS also counts the image of the parent
// the child was forked from before it exec'd node).
import { readFileSync } from "node:fs";

process.on("exit", () => {
  let kib;
  try {
    kib = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))[1]);
  } catch {
    kib = process.resourceUsage().maxRSS;
  }
  process.stderr.write(`peak-rss-kib ${kib}\n`);
});
