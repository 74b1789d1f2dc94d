// vmstream/analyze: read device sections from the stream's own vmdesc (as analyze-migration.py
// does) or from the built-in descriptions, and write analyze-migration.py's `-d state` document.
export * from "../vmstate/from-vmdesc.js";
export * from "./analyze-json.js";
export {
  AnalyzeVisitor,
  ANALYZE_BLOB_MARK,
  ANALYZE_LIST_MARK,
  analyzeBytes,
  analyzeHex,
  analyzeInt,
  analyzeReaderOf,
  type AnalyzeReader,
} from "../visitor/analyze.js";
export * from "./report.js";
