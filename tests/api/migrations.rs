use std::collections::BTreeSet;

use diesel::RunQueryDsl;
use diesel::sql_types::Text;
use shopd::db::{self, DbConnection};

use crate::helpers::TestDb;

fn folders(backend: &str) -> BTreeSet<String> {
    std::fs::read_dir(format!(
        "{}/migrations/{backend}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .map(|e| e.unwrap())
    .filter(|e| e.path().is_dir())
    .map(|e| {
        for file in ["up.sql", "down.sql"] {
            assert!(e.path().join(file).is_file(), "{:?} has {file}", e.path());
        }
        e.file_name().to_string_lossy().into_owned()
    })
    .collect()
}

#[test]
fn both_backends_have_the_same_migrations() {
    let sqlite = folders("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, folders("postgres"));
}

#[derive(diesel::QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    name: String,
}

fn tables(conn: &mut DbConnection) -> BTreeSet<String> {
    let sql = match conn {
        DbConnection::Sqlite(_) => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        }
        DbConnection::Postgresql(_) => {
            "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'"
        }
    };
    diesel::sql_query(sql)
        .load::<TableName>(conn)
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .filter(|n| n != "__diesel_schema_migrations")
        .collect()
}

#[test]
fn every_migration_runs_up_down_and_up_again() {
    let test_db = TestDb::new();
    let mut conn = db::establish(&test_db.url).unwrap();
    let mut steps = 0;
    loop {
        let before = tables(&mut conn);
        if !db::run_next_migration(&mut conn).unwrap() {
            break;
        }
        let after = tables(&mut conn);
        db::revert_last_migration(&mut conn).unwrap();
        assert_eq!(
            tables(&mut conn),
            before,
            "down undoes up exactly (step {steps})"
        );
        assert!(db::run_next_migration(&mut conn).unwrap());
        assert_eq!(
            tables(&mut conn),
            after,
            "up again gives the same tables (step {steps})"
        );
        steps += 1;
    }
    assert_eq!(steps, folders("sqlite").len());
    assert!(!db::has_pending_migrations(&mut conn).unwrap());
    assert_eq!(db::revert_all_migrations(&mut conn).unwrap(), steps);
    assert!(
        tables(&mut conn).is_empty(),
        "all down leaves nothing behind"
    );
    assert_eq!(db::run_pending_migrations(&mut conn).unwrap(), steps);
}
