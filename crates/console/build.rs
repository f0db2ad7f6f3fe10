//! Builds the console's script into the binary: `web/dist/console.js`, which
//! `npm run build` in `web/` makes (scripts/dev and scripts/test run it first). Without
//! it the binary still builds, and its console page says what to run instead of
//! failing silently.

use std::path::Path;

const MISSING: &str = r#"document.body.textContent = "The console's scripts were not built into this binary: run scripts/dev, or npm ci && npm run build in crates/console/web, then build helpline again.";
"#;

/// What a site that embeds an unbuilt widget sees, in its browser's console.
const WIDGET_MISSING: &str = r#"console.error("helpline: the web-chat widget's script was not built into this binary: run scripts/dev, or npm ci && npm run build in crates/console/web, then build helpline again.");
"#;

fn main() {
    embed("console.js", MISSING);
    embed("widget.js", WIDGET_MISSING);
}

/// `web/dist/<name>` into `OUT_DIR`, or `missing` when it is not built.
fn embed(name: &str, missing: &str) {
    println!("cargo:rerun-if-changed=web/dist/{name}");
    let built = Path::new("web/dist").join(name);
    let out = Path::new(&std::env::var_os("OUT_DIR").unwrap_or_default()).join(name);
    let script = match std::fs::read_to_string(&built) {
        Ok(script) => script,
        Err(_) => {
            println!(
                "cargo:warning=crates/console/web/dist/{name} is not built: it will say so (npm ci && npm run build in crates/console/web)"
            );
            missing.to_owned()
        }
    };
    if let Err(e) = std::fs::write(&out, script) {
        panic!("cannot write {}: {e}", out.display());
    }
}
