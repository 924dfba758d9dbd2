//! The all-in-one launcher. It grows with each service; see README.md.

fn main() {
    println!("movies: no service is wired into the launcher yet; see README.md");
}
