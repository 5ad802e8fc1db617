//! `stock [serve|replay|verify|export]`.

fn main() -> std::process::ExitCode {
    servicekit::cli::main_for::<stock::StockParticipant>()
}
