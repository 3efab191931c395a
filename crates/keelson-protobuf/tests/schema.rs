//! Checks that the committed `src/schema.txt` is what the generator makes of the current
//! dependencies; the ignored test rewrites it.

#[path = "../gen/generator.rs"]
mod generator;

use std::path::Path;

fn schema_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join("schema.txt")
}

#[test]
fn committed_schema_is_up_to_date() {
    let generated = generator::generate().expect("generator runs");
    let committed = std::fs::read_to_string(schema_path()).unwrap_or_default();
    assert!(
        generated == committed,
        "src/schema.txt is stale: run `cargo test -p keelson-protobuf --test schema -- --ignored`"
    );
}

#[test]
#[ignore = "rewrites src/schema.txt"]
fn regenerate_schema() {
    let generated = generator::generate().expect("generator runs");
    std::fs::write(schema_path(), generated).expect("schema.txt written");
}
