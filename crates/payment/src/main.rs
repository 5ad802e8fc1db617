//! `payment [serve|replay|verify|export]`.

fn main() -> std::process::ExitCode {
    servicekit::cli::main_for::<payment::app::PaymentService>()
}
