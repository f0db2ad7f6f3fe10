//! Builds the console's script into the binary: `web/dist/console.js`, which
//! `npm run build` in `web/` makes (scripts/dev and scripts/test run it first). Without
//! it the binary still builds, and its console page says what to run instead of
//! failing silently.

use std::path::Path;

const MISSING: &str = r#"document.body.textContent = "The console's scripts were not built into this binary: run scripts/dev, or npm ci && npm run build in crates/console/web, then build helpline again.";
"#;

fn main() {
    println!("cargo:rerun-if-changed=web/dist/console.js");
    let built = Path::new("web/dist/console.js");
    let out = Path::new(&std::env::var_os("OUT_DIR").unwrap_or_default()).join("console.js");
    let script = match std::fs::read_to_string(built) {
        Ok(script) => script,
        Err(_) => {
            println!(
                "cargo:warning=crates/console/web/dist/console.js is not built: the console page will say so (npm ci && npm run build in crates/console/web)"
            );
            MISSING.to_owned()
        }
    };
    if let Err(e) = std::fs::write(&out, script) {
        panic!("cannot write {}: {e}", out.display());
    }
}
