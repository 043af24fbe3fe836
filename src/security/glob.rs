//! Patterns on workflow ids: `*` (any run of characters, none included) and `?` (one
//! character); every other character stands for itself.
//!
//! Matching is the two-pointer algorithm with one backtracking point (the last `*`
//! seen): on a mismatch after a `*`, the `*` takes one more character and matching goes
//! on from there. Earlier stars never need revisiting, because a later `*` can absorb
//! whatever an earlier one would have, so the work is O(pattern × id) in the worst case
//! and O(pattern + id) for the usual `algo-*`: no exponential backtracking, whatever the
//! pattern.

use std::fmt;

/// A compiled pattern on workflow ids: `*` matches any run of characters (none
/// included), `?` one character, every other character itself; the whole id must match.
///
/// Matching keeps one backtracking point (the last `*` seen): on a mismatch after a
/// `*`, that `*` takes one more character. A later `*` can absorb whatever an earlier
/// one would have, so earlier ones never need revisiting: O(pattern × id) at worst,
/// O(pattern + id) for the usual `algo-*`, never exponential.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    chars: Vec<char>,
}

impl Glob {
    /// The longest pattern accepted, in characters.
    pub const MAX_CHARS: usize = 256;

    /// Compiles `pattern`; `None` when it is empty or longer than [`Glob::MAX_CHARS`].
    pub fn new(pattern: &str) -> Option<Self> {
        let chars: Vec<char> = pattern.chars().collect();
        if chars.is_empty() || chars.len() > Self::MAX_CHARS {
            return None;
        }
        Some(Self {
            text: pattern.to_owned(),
            chars,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `id` matches the whole pattern.
    ///
    /// # Examples
    /// ```
    /// use tradeflow::security::Glob;
    /// let glob = Glob::new("algo-?x*").unwrap();
    /// assert!(glob.matches("algo-1x"));
    /// assert!(glob.matches("algo-2xyz"));
    /// assert!(!glob.matches("algo-x"));
    /// ```
    pub fn matches(&self, id: &str) -> bool {
        let pattern = &self.chars;
        let text: Vec<char> = id.chars().collect();
        let (mut p, mut t) = (0, 0);
        // The last `*` seen, and where in the text it began matching.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pattern.get(p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(&c) if c == '?' || text.get(t) == Some(&c) => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        p = star_p + 1;
                        t = star_t + 1;
                        star = Some((star_p, star_t + 1));
                    }
                    None => return false,
                },
            }
        }
        pattern
            .get(p..)
            .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Glob").field(&self.text).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, id: &str) -> bool {
        Glob::new(pattern).is_some_and(|glob| glob.matches(id))
    }

    #[test]
    fn stars_and_question_marks_match_as_documented() {
        assert!(matches("*", ""));
        assert!(matches("*", "anything"));
        assert!(matches("algo-*", "algo-"));
        assert!(matches("algo-*", "algo-twap"));
        assert!(!matches("algo-*", "algo"));
        assert!(!matches("algo-*", "xalgo-1"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*-eod", "flatten-eod"));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(!matches("a*b*c", "aXbYbZ"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
        assert!(matches("é?*", "éü"));
    }

    #[test]
    fn empty_and_overlong_patterns_are_not_patterns() {
        assert!(Glob::new("").is_none());
        assert!(Glob::new(&"a".repeat(Glob::MAX_CHARS + 1)).is_none());
        assert!(Glob::new(&"a".repeat(Glob::MAX_CHARS)).is_some());
    }

    #[test]
    fn pathological_patterns_stay_polynomial() {
        // Exponential backtracking would never finish this.
        let pattern = "*a".repeat(100) + "b";
        let id = "a".repeat(10_000);
        assert!(!matches(&pattern, &id));
    }
}
