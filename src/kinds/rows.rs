//! What both paths of the export share: the batches its reading thread hands to its
//! writing one, and the formula guard every CSV cell of a name passes.

use crate::models::student::ExportRow;

/// What the reading thread hands to the writing one.
pub enum Batch {
    /// How many rows the export will have after its start: first, except on the COPY
    /// path, where it may follow some rows.
    Total(u64),
    Rows(Vec<ExportRow>),
    /// Whole CSV rows, encoded as the file holds them (by PostgreSQL's COPY).
    Encoded {
        bytes: Vec<u8>,
        rows: u64,
        /// The (age, id) of the last of them.
        last: (i32, i64),
    },
}

/// A CSV cell that a spreadsheet would take for a formula gets a leading `'`.
pub fn neutralise_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    match starts_formula(cell) {
        true => format!("'{cell}").into(),
        false => cell.into(),
    }
}

/// Characters spreadsheets skip before a formula: zero-width spaces and joiners, the BOM.
const INVISIBLE: [char; 5] = ['\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}'];

/// Whether a spreadsheet would take `text`, read from its start, for a formula: its first
/// visible character is one that opens one, in ASCII or full width (`＝` is a formula to
/// some spreadsheets).
pub fn starts_formula(text: &str) -> bool {
    let first = text.chars().find(|c| !INVISIBLE.contains(c));
    matches!(
        first,
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '＝' | '＋' | '－' | '＠')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        for cell in [
            "=1+1",
            "+1",
            "-1",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "＝1+1",
            "＋1",
            "－1",
            "＠x",
            "\u{200B}=1",
            "\u{FEFF}=1",
            "\u{200D}\u{2060}+1",
        ] {
            assert_eq!(neutralise_formula(cell), format!("'{cell}"));
        }
        for cell in ["Ada", "1+1", "", "é=x", "\u{200B}", "\u{FEFF}Ada"] {
            assert_eq!(neutralise_formula(cell), cell);
        }
    }
}
