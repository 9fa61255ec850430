//! Writes the seed corpus (`laxnet_fuzz::seeds`) to `fuzz/corpus/<target>/seed-<name>`,
//! replacing the seeds already there and leaving every other file (inputs the fuzzer found,
//! past crashes) alone.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let names = laxnet_fuzz::TARGETS.iter().map(|(t, _)| *t).chain(["sim"]);
    for target in names {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            {
                std::fs::remove_file(p)?;
            }
        }
    }
    let seeds = laxnet_fuzz::seeds::all();
    for s in &seeds {
        std::fs::write(
            root.join(s.target).join(format!("seed-{}", s.name)),
            &s.bytes,
        )?;
    }
    println!("wrote {} seeds under {}", seeds.len(), root.display());
    Ok(())
}
