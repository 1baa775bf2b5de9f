fn main() -> std::process::ExitCode {
    netns_trace::cli::main()
}
