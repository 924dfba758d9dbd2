//! The process itself: its allocator, its open-file limit, and the signal
//! that stops it.

// glibc malloc's arena locks showed up as the top cost under load (futex
// waits in malloc/free); mimalloc has none of that. Declared once, here, for
// every binary of the platform.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Raises this process's soft limit on open files to its hard limit (a
/// server holds a file descriptor per connection), and answers the limit
/// now in force (`u64::MAX` where there is none to read).
pub fn raise_open_file_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return u64::MAX;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    ..limit
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        #[allow(clippy::useless_conversion)] // rlim_t is not u64 on every unix
        u64::try_from(limit.rlim_cur).unwrap_or(u64::MAX)
    }
    #[cfg(not(unix))]
    u64::MAX
}

/// Makes every file and directory this process creates from now on its
/// owner's only (umask 077): SQLite databases and their `-wal` and `-shm`,
/// key files, snapshots and their temporaries hold password hashes, keys
/// and tokens' digests, and are nobody else's business on a shared host.
pub fn private_files() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks the
/// kernel for them on its arenas (`MADV_HUGEPAGE`), and then memory is
/// resident in 2 MiB units: a page the allocator freed stays in the RSS
/// while the huge page around it holds anything, and a huge page's first
/// touch zeroes 2 MiB at once. After a million ratings through
/// `bench/million.sh` the process held 175 MB with them and 122 MB
/// without, and the catalog's snapshots held new events up to 7.9 ms
/// against 0.3; neither `bench/compare.sh` nor `bench/million.sh` showed
/// a rate that moved beyond their noise. `bench-memory` calls it too, so
/// that it measures what a service holds.
pub fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process's memory
    // map; it reads no pointer. It fails only on kernels before 3.15,
    // which then keep huge pages: nothing else to do.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// The multi-threaded runtime a binary runs on, as `#[tokio::main]`
/// builds it, except that its workers batch their log lines (see
/// [`crate::logging::on_worker_park`]). Called first in every binary, it
/// also turns huge pages off ([`no_huge_pages`]) before the runtime
/// allocates.
pub fn runtime() -> tokio::runtime::Runtime {
    no_huge_pages();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(crate::logging::on_worker_park)
        .on_thread_stop(crate::logging::flush)
        .build()
        .expect("the runtime starts (threads and the I/O driver)")
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested");
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_end_up_off_for_the_process() {
        super::no_huge_pages();
        // SAFETY: PR_GET_THP_DISABLE reads a flag of this process.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(disabled, 1);
    }
}
