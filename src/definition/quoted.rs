//! [`Quoted`]: user text as messages show it, on one line and of bounded length.
//!
//! Messages quote what the user wrote (ids, field names, values, expressions, cron
//! patterns), and what the user wrote can hold a newline, an escape sequence or ten
//! megabytes. Every message shows such text through this one wrapper, so that each
//! message is one line of bounded length while the error's fields keep the full text.

use std::fmt::{self, Write};

/// User text as a message shows it: on one line, at most [`Quoted::MAX_CHARS`]
/// characters of it.
///
/// Control characters are escaped as Rust writes them (`\n`, `\r`, `\t`, `\0`, and
/// `\u{1b}` for the others), and so are the characters that break or reorder a line
/// without being control characters: the Unicode line and paragraph separators
/// (`\u{2028}`, `\u{2029}`) and the bidirectional formatting characters (`\u{202e}`, …).
/// Text longer than [`Quoted::MAX_CHARS`] characters is cut after that many, never
/// inside a character, and ends with `…` and its full length in bytes:
/// `xxxx…(10485760 bytes)`. Nothing else changes (backslashes and backticks are shown
/// as they are), and the wrapper adds no quotes: messages put it between backticks.
///
/// Showing costs O([`Quoted::MAX_CHARS`]) whatever the length of the text.
///
/// # Examples
/// ```
/// use tradeflow::definition::Quoted;
///
/// assert_eq!(Quoted("risk\ncheck\t\u{1b}[31m").to_string(), r"risk\ncheck\t\u{1b}[31m");
/// let huge = "x".repeat(10 * 1024 * 1024);
/// let shown = Quoted(&huge).to_string();
/// assert!(shown.ends_with("x…(10485760 bytes)"));
/// assert_eq!(shown.chars().filter(|c| *c == 'x').count(), Quoted::MAX_CHARS);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted<'a>(pub &'a str);

impl Quoted<'_> {
    /// How many characters of the text are shown; longer text is cut.
    pub const MAX_CHARS: usize = 120;
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, (at, c)) in self.0.char_indices().enumerate() {
            if shown == Self::MAX_CHARS {
                debug_assert!(at < self.0.len());
                return write!(f, "…({} bytes)", self.0.len());
            }
            write_char(f, c)?;
        }
        Ok(())
    }
}

/// Writes `c`, escaped if it would break or reorder the line.
fn write_char(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    match c {
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        '\0' => f.write_str("\\0"),
        _ if c.is_control() || breaks_line(c) => write!(f, "\\u{{{:x}}}", u32::from(c)),
        _ => f.write_char(c),
    }
}

/// Characters that are not control characters but end a line (the Unicode line and
/// paragraph separators) or reorder what follows (bidirectional formatting).
fn breaks_line(c: char) -> bool {
    matches!(
        c,
        '\u{2028}'
            | '\u{2029}'
            | '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// How many names [`quoted_names`] shows.
const MAX_LISTED: usize = 10;

/// Names from the definition as a message lists them: each through [`Quoted`], joined by
/// `, `; past [`MAX_LISTED`] of them, `, … (N in all)`.
pub(crate) fn quoted_names(names: &[&str]) -> String {
    let mut text = String::new();
    for (i, name) in names.iter().take(MAX_LISTED).enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = write!(text, "{}", Quoted(name));
    }
    if names.len() > MAX_LISTED {
        let _ = write!(text, ", … ({} in all)", names.len());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        Quoted(text).to_string()
    }

    #[test]
    fn ordinary_text_is_shown_as_it_is() {
        assert_eq!(shown("market-analysis"), "market-analysis");
        assert_eq!(shown("héllo wörld ✓ `x` \\n"), "héllo wörld ✓ `x` \\n");
        assert_eq!(shown(""), "");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(shown("a\nb\r\nc\td\0"), r"a\nb\r\nc\td\0");
        assert_eq!(shown("\u{1b}[31mred"), r"\u{1b}[31mred");
        assert_eq!(shown("\u{7f}\u{85}\u{9b}"), r"\u{7f}\u{85}\u{9b}");
        assert_eq!(
            shown("a\u{2028}b\u{2029}c\u{202e}d\u{2066}"),
            r"a\u{2028}b\u{2029}c\u{202e}d\u{2066}"
        );
    }

    #[test]
    fn text_at_the_limit_is_shown_whole() {
        let text = "a".repeat(Quoted::MAX_CHARS);
        assert_eq!(shown(&text), text);
        let wide = "é".repeat(Quoted::MAX_CHARS);
        assert_eq!(shown(&wide), wide);
    }

    #[test]
    fn text_past_the_limit_is_cut_with_its_length() {
        let text = "a".repeat(Quoted::MAX_CHARS + 1);
        assert_eq!(
            shown(&text),
            format!("{}…(121 bytes)", "a".repeat(Quoted::MAX_CHARS))
        );
    }

    #[test]
    fn multi_byte_characters_are_never_split() {
        // 2-, 3- and 4-byte characters around the cut.
        for c in ['é', '✓', '🦀'] {
            let text: String = std::iter::repeat_n(c, Quoted::MAX_CHARS + 5).collect();
            let shown = shown(&text);
            let kept: String = std::iter::repeat_n(c, Quoted::MAX_CHARS).collect();
            assert_eq!(shown, format!("{kept}…({} bytes)", text.len()));
        }
        let mixed = format!("{}🦀🦀", "a".repeat(Quoted::MAX_CHARS - 1));
        assert_eq!(
            shown(&mixed),
            format!(
                "{}🦀…({} bytes)",
                "a".repeat(Quoted::MAX_CHARS - 1),
                mixed.len()
            )
        );
    }

    #[test]
    fn escapes_count_as_one_character_of_the_text() {
        let text = "\n".repeat(Quoted::MAX_CHARS + 1);
        assert_eq!(
            shown(&text),
            format!("{}…(121 bytes)", r"\n".repeat(Quoted::MAX_CHARS))
        );
    }

    #[test]
    fn lists_of_names_are_bounded() {
        assert_eq!(quoted_names(&["a", "b\nc"]), r"a, b\nc");
        let many: Vec<String> = (0..25).map(|i| format!("p{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            quoted_names(&many),
            "p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, … (25 in all)"
        );
    }

    #[test]
    fn huge_text_is_shown_in_bounded_space() {
        let text = "\n".repeat(10 * 1024 * 1024);
        let shown = shown(&text);
        assert!(shown.len() < 1024, "{}", shown.len());
        assert!(shown.ends_with("…(10485760 bytes)"));
        assert!(!shown.contains('\n'));
    }
}
