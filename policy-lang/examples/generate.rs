//! Writes a generated repository to a directory, for end-to-end benchmarks:
//! `cargo run --release -p meshplan-policy-lang --example generate -- N DIR`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(n), Some(dir)) = (
        args.first().and_then(|n| n.parse::<usize>().ok()),
        args.get(1),
    ) else {
        eprintln!("usage: generate N DIR");
        std::process::exit(2);
    };
    let sources = meshplan_policy_lang::generate::repository(n);
    for (name, text) in &sources.files {
        let path = std::path::Path::new(dir).join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create directory");
        }
        std::fs::write(&path, text).expect("write file");
    }
    eprintln!(
        "wrote {} files ({n} services) to {dir}",
        sources.files.len()
    );
}
