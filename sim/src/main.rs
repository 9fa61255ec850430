//! `laxsim`: the seeded simulation runner (placeholder until the simulation issue lands).

fn main() {
    eprintln!("laxsim: the simulation suite is not built yet; see the laxsim issue");
    std::process::exit(2);
}
