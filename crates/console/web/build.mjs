// Builds the console's script and the web-chat widget's: the gRPC-Web clients generated
// from proto/ (buf, with protobuf-ts's plugin), a type check, then src/main.ts and
// src/widget.ts, each with everything it imports, bundled by esbuild into dist/console.js
// and dist/widget.js, which crates/console builds into the binary. The same lock file
// and sources give the same bundle.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import * as esbuild from "esbuild";

const root = new URL("../../../", import.meta.url).pathname;
rmSync("src/gen", { recursive: true, force: true });
execFileSync("buf", ["generate", root, "--template", "buf.gen.yaml"], { stdio: "inherit" });
// esbuild strips types without reading them: the type check is TypeScript's own.
execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "."], { stdio: "inherit" });
await esbuild.build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  outfile: "dist/console.js",
  logLevel: "warning",
});
// The widget runs on other sites' pages as a classic script (it finds its own origin in
// document.currentScript), so it is one self-contained function, not a module.
await esbuild.build({
  entryPoints: ["src/widget.ts"],
  bundle: true,
  format: "iife",
  target: "es2022",
  minify: true,
  legalComments: "none",
  outfile: "dist/widget.js",
  logLevel: "warning",
});
console.log("built dist/console.js and dist/widget.js");
