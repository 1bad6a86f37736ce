#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    vaultfs::cli::main()
}
