//! The non-figure writers: CSV rows through `csv::Writer`, JSON records stamped with the commit
//! the binary was built from, and Markdown tables — all written atomically.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// The git commit this binary was built from (with "with uncommitted changes" when the tree
/// was dirty).
pub const COMMIT: &str = env!("EKVAE_GIT_COMMIT");

/// Writes `rows` as a CSV file (header from the struct's field names).
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).with_context(|| format!("{}: cannot serialise a row", path.display()))?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    ekvae_model::rundir::write_atomic(path, &bytes)?;
    Ok(())
}

/// Writes rows of already formatted fields as a CSV file under `header` (for rows whose columns
/// depend on the data, e.g. a system's state coordinates).
pub fn write_csv_rows(path: &Path, header: &[String], rows: &[Vec<String>]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)
        .with_context(|| format!("{}: cannot write the header", path.display()))?;
    for r in rows {
        w.write_record(r).with_context(|| format!("{}: cannot write a row", path.display()))?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    ekvae_model::rundir::write_atomic(path, &bytes)?;
    Ok(())
}

/// Writes `value` as pretty JSON; an object gets a `commit` key (the code that wrote it).
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut v = serde_json::to_value(value).context("serialising a record")?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("commit".into(), COMMIT.into());
    }
    let text = serde_json::to_string_pretty(&v).context("serialising a record")?;
    ekvae_model::rundir::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// Column alignment in a [`Markdown`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// The one Markdown writer: headings, paragraphs, bullet lists and tables.
#[derive(Debug, Default)]
pub struct Markdown {
    text: String,
}

impl Markdown {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }
    /// `#`×level heading.
    pub fn heading(&mut self, level: usize, title: &str) -> &mut Self {
        self.text.push_str(&format!("{} {title}\n\n", "#".repeat(level)));
        self
    }
    /// A paragraph.
    pub fn paragraph(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text.trim_end());
        self.text.push_str("\n\n");
        self
    }
    /// A bullet list.
    pub fn bullets<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        for i in items {
            self.text.push_str(&format!("- {}\n", i.as_ref()));
        }
        self.text.push('\n');
        self
    }
    /// A table; every row has as many cells as `header` (pipes in cells are escaped).
    pub fn table<S: AsRef<str>>(
        &mut self,
        header: &[(S, Align)],
        rows: &[Vec<String>],
    ) -> &mut Self {
        let esc = |s: &str| s.replace('|', "\\|");
        let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
        self.text.push_str(&line(header.iter().map(|(h, _)| esc(h.as_ref())).collect()));
        self.text.push_str(&format!(
            "|{}|\n",
            header
                .iter()
                .map(|(_, a)| if *a == Align::Right { "---:" } else { "---" })
                .collect::<Vec<_>>()
                .join("|")
        ));
        for r in rows {
            debug_assert_eq!(r.len(), header.len());
            self.text.push_str(&line(r.iter().map(|c| esc(c)).collect()));
        }
        self.text.push('\n');
        self
    }
    /// The document.
    pub fn finish(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_tables_align_and_escape() {
        let mut md = Markdown::new();
        md.heading(2, "T")
            .table(&[("a", Align::Left), ("b", Align::Right)], &[vec!["x|y".into(), "1".into()]]);
        assert_eq!(md.finish(), "## T\n\n| a | b |\n|---|---:|\n| x\\|y | 1 |\n\n");
    }
}
