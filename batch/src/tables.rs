//! Every cell of a community's metric tables under one readable key, so that two computations
//! (the batch one and what ClickHouse holds) compare cell by cell. Counts of zero are left out on
//! both sides: ClickHouse keeps no row for many of them, and "missing" and 0 mean the same.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    Count(u64),
    Real(Option<f64>),
    Flag(bool),
}

impl Cell {
    /// Counts are equal or not; reals agree to 1e-9 relative (they are ratios and medians computed
    /// in a different order on each side).
    pub fn agrees(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Real(Some(a)), Cell::Real(Some(b))) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
            _ => self == other,
        }
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Count(n) => write!(f, "{n}"),
            Cell::Real(Some(x)) => write!(f, "{x}"),
            Cell::Real(None) => write!(f, "null"),
            Cell::Flag(b) => write!(f, "{b}"),
        }
    }
}

/// Cells by key, e.g. `retention scope=g1 granularity=week mode=on cohort=2024-01-01 k=3`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tables {
    pub cells: BTreeMap<String, Cell>,
}

impl Tables {
    pub fn put(&mut self, key: String, cell: Cell) {
        if cell != Cell::Count(0) {
            self.cells.insert(key, cell);
        }
    }

    pub fn add(&mut self, key: String, n: u64) {
        if n > 0 {
            let e = self.cells.entry(key).or_insert(Cell::Count(0));
            if let Cell::Count(c) = e {
                *c += n;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// A cell where the two sides differ (`None`: that side has no such cell, i.e. zero or no row).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub key: String,
    pub stored: Option<Cell>,
    pub batch: Option<Cell>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |c: &Option<Cell>| c.map(|c| c.to_string()).unwrap_or_else(|| "0 / no row".into());
        write!(f, "{}: clickhouse {} , batch {}", self.key, show(&self.stored), show(&self.batch))
    }
}

pub fn diff(stored: &Tables, batch: &Tables) -> Vec<Difference> {
    let mut out = Vec::new();
    for (k, s) in &stored.cells {
        match batch.cells.get(k) {
            Some(b) if s.agrees(b) => {}
            b => out.push(Difference { key: k.clone(), stored: Some(*s), batch: b.copied() }),
        }
    }
    for (k, b) in &batch.cells {
        if !stored.cells.contains_key(k) {
            out.push(Difference { key: k.clone(), stored: None, batch: Some(*b) });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// Key builders shared by both sides, so that a cell is named one way.
pub mod key {
    use chrono::NaiveDate;

    fn scope(s: &str) -> &str {
        if s.is_empty() {
            "(community)"
        } else {
            s
        }
    }

    pub fn size(s: &str, g: &str, cohort: NaiveDate) -> String {
        format!("cohort_size scope={} granularity={g} cohort={cohort}", scope(s))
    }

    pub fn retention(s: &str, g: &str, mode: &str, cohort: NaiveDate, k: usize) -> String {
        format!("retention scope={} granularity={g} mode={mode} cohort={cohort} k={k}", scope(s))
    }

    pub fn cohort(table: &str, s: &str, g: &str, cohort: NaiveDate, column: &str) -> String {
        format!("{table} scope={} granularity={g} cohort={cohort} {column}", scope(s))
    }

    pub fn period(table: &str, s: &str, g: &str, period: NaiveDate, column: &str) -> String {
        format!("{table} scope={} granularity={g} period={period} {column}", scope(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_counts_and_missing_cells_are_the_same_and_everything_else_differs() {
        let mut a = Tables::default();
        let mut b = Tables::default();
        a.put("x".into(), Cell::Count(0));
        a.put("y".into(), Cell::Count(2));
        b.add("y".into(), 1);
        b.add("y".into(), 1);
        a.put("r".into(), Cell::Real(Some(0.1 + 0.2)));
        b.put("r".into(), Cell::Real(Some(0.3)));
        assert!(diff(&a, &b).is_empty());
        b.put("z".into(), Cell::Flag(false));
        a.put("y".into(), Cell::Count(3));
        let d = diff(&a, &b);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].to_string(), "y: clickhouse 3 , batch 2");
        assert_eq!(d[1].stored, None);
    }
}
