import { describe, expect, it } from "vitest";
import { createKernels, simdSupported } from "../../src/kernels/index.js";

describe("createKernels", () => {
  it("auto picks wasm-simd where the engine validates it", () => {
    expect(createKernels().backend).toBe(simdSupported() ? "wasm-simd" : "wasm-scalar");
  });
});
