//! Text for a terminal: control characters escaped, only styling escape sequences kept.

/// Text for a terminal, redacted and escaped: the one way every text the tool shows leaves it
/// (the redacting writer for stdout, and the same for stderr). Control characters are
/// escaped but the newline and the tab; an ANSI style sequence (SGR: bold, colours, reset) is
/// kept where `styles` allows it (the terminal takes colours), as long as it only styles —
/// no cursor movement, no concealed text — so a node's own escape sequence never acts.
pub fn for_terminal(s: &str, styles: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c == '\u{1b}' && styles {
            if let Some(len) = sgr_len(rest) {
                out.push_str(&rest[..len]);
                rest = &rest[len..];
                continue;
            }
        }
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The length of an SGR sequence that only styles (`ESC [ 1 ; 33 m`) at the start of `s`.
fn sgr_len(s: &str) -> Option<usize> {
    let body = s.strip_prefix("\u{1b}[")?;
    let end = body.find('m')?;
    let params = &body[..end];
    let styles_only = params.split(';').all(|p| {
        p.is_empty()
            || p.parse::<u32>().is_ok_and(
                |n| matches!(n, 0..=5 | 7 | 21..=25 | 27 | 30..=39 | 40..=49 | 90..=97 | 100..=107),
            )
    });
    (styles_only && params.len() <= 32).then_some(2 + end + 1)
}
