//! `lb`: parse the command line, run the command (see `lb --help`).
fn main() {
    lb_user::cli::main()
}
