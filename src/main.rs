use std::process::ExitCode;

fn main() -> ExitCode {
    return_large_allocations_to_the_system();
    shopd::cli::main()
}

/// Each argon2id hash allocates 19 MiB on a blocking thread; glibc would keep those blocks in per-thread
/// arenas and RSS would grow by gigabytes under a login storm. Allocations above 128 KiB go straight to
/// mmap and back to the system when freed (see docs/performance.md, "Load harness").
fn return_large_allocations_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator parameter; it is called before any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
