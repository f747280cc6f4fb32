//! A process that exits while other threads still talk to PostgreSQL (a stopping server's pool, a reader
//! finishing its batch) exits cleanly. libpq encrypts through the system OpenSSL, whose clean-up at exit
//! used to free its state under those threads: the PostgreSQL test binary once died with SIGSEGV after
//! every test had passed.

use std::process::Command;
use std::time::Duration;

use diesel::RunQueryDsl;
use shopd::config::DatabaseUrl;

const CHILD: &str = "SHOPD_TEST_EXIT_CHILD";
const RUNS: usize = 12;
const THREADS: usize = 4;

#[test]
fn a_process_exits_cleanly_while_its_threads_connect_to_postgres() {
    let Some(base) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
    else {
        return; // on SQLite no thread of the process is inside libpq
    };
    if std::env::var_os(CHILD).is_some() {
        connect_until_exit(&base);
    }
    for run in 1..=RUNS {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "process_exit::a_process_exits_cleanly_while_its_threads_connect_to_postgres",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run {run}: the process ended with {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The child: threads that connect, query and disconnect without pause, and an exit from under them.
fn connect_until_exit(base: &str) -> ! {
    let url = DatabaseUrl::parse(base).unwrap();
    for _ in 0..THREADS {
        let url = url.clone();
        std::thread::spawn(move || {
            loop {
                let mut conn = shopd::db::establish(&url).expect("PostgreSQL reachable");
                diesel::sql_query("SELECT 1").execute(&mut conn).unwrap();
            }
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    std::process::exit(0)
}
