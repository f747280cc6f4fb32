//! `shopd products import FILE`: a JSON array of `{name, price, currency?, stock, active?}` or a CSV file with
//! the header `name,price,stock,active`. Every row is validated before anything is written; bad rows are
//! reported by line number and nothing is imported; otherwise every row is inserted in one transaction.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::db::{Db, write_tx};
use crate::orders::catalogue;
use crate::orders::import;

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
    let format = match format {
        Format::Json => import::Format::Json,
        Format::Csv => import::Format::Csv,
    };
    let rows = import::parse(&bytes, format, &config.shop_currency).map_err(|refused| {
        let why = match refused {
            import::Refused::File(why) => why,
            import::Refused::Rows(bad) => bad_rows(&bad),
        };
        format!("{}: {why}", file.display())
    })?;
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
        _ if import::Format::sniff(bytes) == import::Format::Json => Format::Json,
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

#[cfg(test)]
mod tests {
    use super::*;

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
