//! Wildcard matching for name filters (`SHOW TABLES LIKE`, Flight SQL's metadata filters).
//!
//! Greedy matching with one backtrack point (the last `*`/`%` seen): time is at most the
//! product of the two lengths and nothing recurses, so a pattern of thousands of wildcards
//! costs what its length costs.

/// Whether `text` matches `pattern`, where `many` matches any run of characters (also none) and
/// `one`, when given, matches exactly one character. Other characters match themselves.
pub fn wildcard_match(pattern: &str, text: &str, many: char, one: Option<char>) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = text.chars().collect();
    let (mut pi, mut si) = (0usize, 0usize);
    // Where the last `many` was, and how much of the text it has taken so far.
    let mut backtrack: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == many {
            backtrack = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && (Some(p[pi]) == one || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if let Some((star, taken)) = backtrack {
            // Let the last `many` take one more character and try again after it.
            pi = star + 1;
            si = taken + 1;
            backtrack = Some((star, taken + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == many)
}

#[cfg(test)]
mod tests {
    use super::wildcard_match as m;

    #[test]
    fn matches_like_a_glob() {
        assert!(m("ev*", "events", '*', None));
        assert!(m("*", "", '*', None));
        assert!(m("*ts", "events", '*', None));
        assert!(m("e*n*s", "events", '*', None));
        assert!(!m("ev", "events", '*', None));
        assert!(!m("*x*", "events", '*', None));
        assert!(m("e_ents", "events", '%', Some('_')));
        assert!(m("%v%t%", "events", '%', Some('_')));
        assert!(!m("_", "", '%', Some('_')));
        assert!(m("a%b%c", "aXbYc", '%', Some('_')));
        assert!(!m("a%b%c", "aXbY", '%', Some('_')));
    }

    #[test]
    fn many_wildcards_take_no_time() {
        let pattern = format!("{}x", "*".repeat(5000));
        let text = "a".repeat(5000);
        let started = std::time::Instant::now();
        assert!(!m(&pattern, &text, '*', None));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
