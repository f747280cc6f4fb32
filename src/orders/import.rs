//! Product files: a JSON array of `{name, price, currency?, stock, active?}` or a CSV file with the header
//! `name,price,stock,active`. Every row is checked before anything is written, and a bad one is reported with
//! its line number, so that an import is all or nothing (`shopd products import` and the staff console).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::catalogue::NewProduct;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

impl Format {
    /// JSON when the first character that is not white space is `[`, else CSV.
    pub fn sniff(bytes: &[u8]) -> Self {
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            Self::Json
        } else {
            Self::Csv
        }
    }
}

/// Why nothing of a file is imported: the file as a whole, or these rows (line number, reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    File(String),
    Rows(Vec<(usize, String)>),
}

/// Every row of the file, checked; or why none is taken.
pub fn parse(bytes: &[u8], format: Format, currency: &str) -> Result<Vec<NewProduct>, Refused> {
    match format {
        Format::Json => parse_json(bytes, currency),
        Format::Csv => parse_csv(bytes, currency),
    }
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

fn parse_json(bytes: &[u8], currency: &str) -> Result<Vec<NewProduct>, Refused> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Refused::File("the file is not UTF-8".to_owned()))?;
    let raw: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
        Refused::File(format!(
            "line {}: not a JSON array of products ({})",
            e.line(),
            serde_reason(&e)
        ))
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
        Err(Refused::Rows(bad))
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

fn parse_csv(bytes: &[u8], currency: &str) -> Result<Vec<NewProduct>, Refused> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| Refused::File(format!("line 1: {e}")))?
        .clone();
    let names: Vec<String> = header.iter().map(str::to_ascii_lowercase).collect();
    if names != CSV_HEADER {
        return Err(Refused::File(format!(
            "line 1: the header must be `{}`",
            CSV_HEADER.join(",")
        )));
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
        Err(Refused::Rows(bad))
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
        let Err(Refused::Rows(bad)) = parse_json(text, "EUR") else {
            panic!("bad rows")
        };
        assert_eq!(bad.len(), 3);
        assert_eq!(bad[0], (3, "`name` is empty".to_owned()));
        assert!(bad[1].0 == 4 && bad[1].1.starts_with("`price`"), "{bad:?}");
        assert!(
            bad[2].0 == 5 && bad[2].1.starts_with("unknown field `colour`"),
            "{bad:?}"
        );
        let good = br#"[{"name": "Tea", "price": 450, "stock": 3}, {"name": "Jug", "price": 9, "stock": 0, "active": false}]"#;
        let rows = parse_json(good, "EUR").unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].active && !rows[1].active);
        assert!(matches!(
            parse_json(b"{\"name\": 1}", "EUR"),
            Err(Refused::File(why)) if why.contains("not a JSON array")
        ));
    }

    #[test]
    fn csv_rows_are_reported_by_line() {
        let text =
            b"name,price,stock,active\nTea,450,3,true\nCup,four,1,true\nPot,1,1\nJug,9,2,maybe\n";
        let Err(Refused::Rows(bad)) = parse_csv(text, "EUR") else {
            panic!("bad rows")
        };
        let lines: Vec<usize> = bad.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [3, 4, 5]);
        assert!(bad[0].1.starts_with("`price`") && bad[1].1.starts_with("3 fields"));
        assert!(bad[2].1.starts_with("`active`"));
        assert!(matches!(
            parse_csv(b"title,price\nTea,1\n", "EUR"),
            Err(Refused::File(why)) if why.starts_with("line 1: the header")
        ));
        let rows = parse_csv(
            b"name,price,stock,active\n\"Tea, green\",450,3,\nJug,9,0,false\n",
            "EUR",
        )
        .unwrap();
        assert_eq!(rows[0].name, "Tea, green");
        assert!(rows[0].active && !rows[1].active);
    }
}
