//! Writes keelson's pause image as an OCI archive: `cargo run -p keelson-oci --example pause-archive -- OUT.tar`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: pause-archive OUT.tar")?;
    let digest = keelson_oci::write_pause_archive(std::path::Path::new(&out))?;
    println!("{} {digest} -> {out}", keelson_oci::PAUSE_IMAGE);
    Ok(())
}
