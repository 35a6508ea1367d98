//! Searching a whole database for values that must not be there: the proof an erasure (or a
//! redaction) left nothing behind, in any table, column or event payload.

use runtime::Db;
use runtime::db::Backend;
use sqlx::{Column, Row};

/// Every `(table, column, needle)` where a text or binary column of any table of `db` holds
/// one of `needles` (as a substring, or as UTF-8 bytes inside a blob such as an event
/// payload).
pub async fn find_values(db: &Db, needles: &[&str]) -> Vec<(String, String, String)> {
    let tables_sql = match db.backend() {
        Backend::Sqlite => {
            "SELECT name AS t FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'"
        }
        Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) AS t FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             AND table_name NOT LIKE '_sqlx%'"
        }
    };
    let tables: Vec<String> = sqlx::query(tables_sql)
        .fetch_all(db.pool())
        .await
        .expect("list tables")
        .iter()
        .map(|row| row.get::<String, _>("t"))
        .collect();
    assert!(!tables.is_empty(), "the database has tables to search");
    let mut found = Vec::new();
    for table in tables {
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(db.pool())
            .await
            .expect("read table");
        for row in &rows {
            for (i, column) in row.columns().iter().enumerate() {
                let bytes = match row.try_get::<String, _>(i) {
                    Ok(text) => text.into_bytes(),
                    Err(_) => match row.try_get::<Vec<u8>, _>(i) {
                        Ok(blob) => blob,
                        Err(_) => continue,
                    },
                };
                for needle in needles {
                    if bytes
                        .windows(needle.len().max(1))
                        .any(|w| w == needle.as_bytes())
                    {
                        found.push((
                            table.clone(),
                            column.name().to_owned(),
                            (*needle).to_owned(),
                        ));
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}
