//! `shopd products import FILE`: a JSON array of `{name, price, currency?, stock, active?}` or a CSV file with
//! the header `name,price,stock,active`. Every row is validated before anything is written; bad rows are
//! reported by line number and nothing is imported; otherwise every row is inserted in one transaction.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::db::{Db, write_tx};
use crate::orders::catalogue::{self, NewProduct};

#[derive(Subcommand)]
pub enum ProductsCommand {
    /// Import products from a JSON array or a CSV file: all of them, or none when a row is bad.
    Import {
        /// The file; `.json` or `.csv`, or told by its first character (`[` for JSON).
        file: PathBuf,
        /// Read the file as this format whatever its name.
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Csv,
}

/// Files with at least this many rows show a progress bar while they are written.
const PROGRESS_FROM: usize = 1000;
/// Bad rows named in the one-line failure; the rest are counted.
const BAD_ROWS_SHOWN: usize = 10;

pub fn run(command: ProductsCommand) -> Result<(), String> {
    match command {
        ProductsCommand::Import { file, format } => import(&file, format),
    }
}

fn import(file: &Path, format: Option<Format>) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let config = super::load_config()?;
    let format = format.unwrap_or_else(|| detect(file, &bytes));
    let rows = match format {
        Format::Json => parse_json(&bytes, &config.shop_currency),
        Format::Csv => parse_csv(&bytes, &config.shop_currency),
    }
    .map_err(|e| format!("{}: {e}", file.display()))?;
    if rows.is_empty() {
        return Err(format!("{}: no products in the file", file.display()));
    }

    let db = Db::connect(&config.database).map_err(|e| e.to_string())?;
    db.run_migrations().map_err(|e| e.to_string())?;
    let mut conn = db.get().map_err(|e| e.to_string())?;
    let bar = if rows.len() >= PROGRESS_FROM {
        ProgressBar::new(rows.len() as u64).with_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
                .expect("a valid template"),
        )
    } else {
        ProgressBar::hidden()
    };
    bar.set_message("importing products");
    let ids = write_tx(&mut conn, |conn| {
        catalogue::insert_products(conn, &rows, |n| bar.inc(n as u64))
    })
    .map_err(|e| format!("{}: nothing imported: {e}", file.display()))?;
    bar.finish_and_clear();
    println!("imported {} product(s) from {}", ids.len(), file.display());
    Ok(())
}

fn detect(file: &Path, bytes: &[u8]) -> Format {
    match file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        _ if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') => Format::Json,
        _ => Format::Csv,
    }
}

/// The failure line for bad rows: how many, then each (up to 10) with its line number.
fn bad_rows(bad: &[(usize, String)]) -> String {
    let mut text = format!("{} bad row(s), nothing imported: ", bad.len());
    let shown: Vec<String> = bad
        .iter()
        .take(BAD_ROWS_SHOWN)
        .map(|(line, why)| format!("line {line}: {why}"))
        .collect();
    text.push_str(&shown.join("; "));
    if bad.len() > BAD_ROWS_SHOWN {
        text.push_str(&format!("; … and {} more", bad.len() - BAD_ROWS_SHOWN));
    }
    text
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow {
    name: String,
    price: i64,
    currency: Option<String>,
    stock: i64,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

/// A serde message without its position (which is relative to the row, not the file) and on one line.
fn serde_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    text.split(" at line ")
        .next()
        .unwrap_or(&text)
        .replace('\n', " ")
}

fn parse_json(bytes: &[u8], currency: &str) -> Result<Vec<NewProduct>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the file is not UTF-8".to_owned())?;
    let raw: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
        format!(
            "line {}: not a JSON array of products ({})",
            e.line(),
            serde_reason(&e)
        )
    })?;
    let mut rows = Vec::with_capacity(raw.len());
    let mut bad = Vec::new();
    for value in raw {
        let offset = value.get().as_ptr() as usize - text.as_ptr() as usize;
        let line = text[..offset].matches('\n').count() + 1;
        let parsed = serde_json::from_str::<JsonRow>(value.get())
            .map_err(|e| serde_reason(&e))
            .and_then(|r| {
                NewProduct::parse(
                    &r.name,
                    r.price,
                    r.currency.as_deref(),
                    r.stock,
                    r.active,
                    currency,
                )
            });
        match parsed {
            Ok(row) => rows.push(row),
            Err(why) => bad.push((line, why)),
        }
    }
    if bad.is_empty() {
        Ok(rows)
    } else {
        Err(bad_rows(&bad))
    }
}

const CSV_HEADER: [&str; 4] = ["name", "price", "stock", "active"];

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn parse_csv(bytes: &[u8], currency: &str) -> Result<Vec<NewProduct>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| format!("line 1: {e}"))?
        .clone();
    let names: Vec<String> = header.iter().map(str::to_ascii_lowercase).collect();
    if names != CSV_HEADER {
        return Err(format!(
            "line 1: the header must be `{}`",
            CSV_HEADER.join(",")
        ));
    }
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                let why = match e.kind() {
                    csv::ErrorKind::UnequalLengths { len, .. } => {
                        format!("{len} fields where the header has 4")
                    }
                    csv::ErrorKind::Utf8 { .. } => "not UTF-8".to_owned(),
                    _ => "unreadable".to_owned(),
                };
                bad.push((line, why));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let field = |i: usize| record.get(i).unwrap_or_default();
        let parsed = (|| {
            let price: i64 = field(1)
                .parse()
                .map_err(|_| "`price` is not a whole number of minor units".to_owned())?;
            let stock: i64 = field(2)
                .parse()
                .map_err(|_| "`stock` is not a whole number".to_owned())?;
            let active =
                parse_bool(field(3)).ok_or_else(|| "`active` is not true or false".to_owned())?;
            NewProduct::parse(field(0), price, None, stock, active, currency)
        })();
        match parsed {
            Ok(row) => rows.push(row),
            Err(why) => bad.push((line, why)),
        }
    }
    if bad.is_empty() {
        Ok(rows)
    } else {
        Err(bad_rows(&bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rows_are_reported_by_line() {
        let text = br#"[
  {"name": "Tea", "price": 450, "stock": 3},
  {"name": "", "price": 1, "stock": 1},
  {"name": "Cup", "price": -5, "stock": 1},
  {"name": "Pot", "price": 2500, "stock": 1, "colour": "red"},
  {"name": "Jug", "price": 900, "currency": "EUR", "stock": 2, "active": false}
]"#;
        let e = parse_json(text, "EUR").unwrap_err();
        assert!(
            e.starts_with(
                "3 bad row(s), nothing imported: line 3: `name` is empty; line 4: `price`"
            ),
            "{e}"
        );
        assert!(e.contains("line 5: unknown field `colour`"), "{e}");
        let good = br#"[{"name": "Tea", "price": 450, "stock": 3}, {"name": "Jug", "price": 9, "stock": 0, "active": false}]"#;
        let rows = parse_json(good, "EUR").unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].active && !rows[1].active);
        assert!(
            parse_json(b"{\"name\": 1}", "EUR")
                .unwrap_err()
                .contains("not a JSON array")
        );
    }

    #[test]
    fn csv_rows_are_reported_by_line() {
        let text =
            b"name,price,stock,active\nTea,450,3,true\nCup,four,1,true\nPot,1,1\nJug,9,2,maybe\n";
        let e = parse_csv(text, "EUR").unwrap_err();
        assert!(e.contains("line 3: `price`"), "{e}");
        assert!(e.contains("line 4: 3 fields"), "{e}");
        assert!(e.contains("line 5: `active`"), "{e}");
        assert!(
            parse_csv(b"title,price\nTea,1\n", "EUR")
                .unwrap_err()
                .starts_with("line 1: the header")
        );
        let rows = parse_csv(
            b"name,price,stock,active\n\"Tea, green\",450,3,\nJug,9,0,false\n",
            "EUR",
        )
        .unwrap();
        assert_eq!(rows[0].name, "Tea, green");
        assert!(rows[0].active && !rows[1].active);
    }

    #[test]
    fn many_bad_rows_fit_one_line() {
        let bad: Vec<(usize, String)> = (2..40).map(|l| (l, "bad".to_owned())).collect();
        let text = bad_rows(&bad);
        assert!(
            text.ends_with("… and 28 more") && !text.contains('\n'),
            "{text}"
        );
    }
}
