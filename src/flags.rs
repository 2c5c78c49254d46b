//! kubelet flags where they live: env files (`KEY="--a=b --c d"`, read by systemd's
//! `EnvironmentFile=`) and `Environment=` lines of systemd drop-ins. Files are edited line by
//! line so that everything the migration does not own keeps its text, order and quoting.

use std::fmt::Write as _;

/// One word of a flags string: its text as written (quotes included) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub raw: String,
    pub text: String,
}

/// [`split_words`] for a reader that only looks (redaction, the unit model): text with an
/// unbalanced quote, which systemd would refuse, is split at whitespace instead of failing.
pub fn split_words_lenient(s: &str) -> Vec<Word> {
    split_words(s).unwrap_or_else(|_| {
        s.split_whitespace()
            .map(|w| Word {
                raw: w.to_string(),
                text: w.to_string(),
            })
            .collect()
    })
}

/// A variable name as systemd takes it: letters, digits and `_`, not starting with a digit.
pub fn is_var_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Split like systemd splits an unquoted `$VAR` (and like a shell): at whitespace, honouring
/// single quotes, double quotes and backslash escapes.
pub fn split_words(s: &str) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut text = String::new();
        let mut end = s.len();
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() {
                end = i;
                break;
            }
            chars.next();
            match c {
                '\'' => loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, c)) => text.push(c),
                        None => {
                            return Err(format!("unbalanced single quote in `{}`", &s[start..]))
                        }
                    }
                },
                '"' => loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, c)) => text.push(c),
                            None => {
                                return Err(format!("unbalanced double quote in `{}`", &s[start..]))
                            }
                        },
                        Some((_, c)) => text.push(c),
                        None => {
                            return Err(format!("unbalanced double quote in `{}`", &s[start..]))
                        }
                    }
                },
                '\\' => match chars.next() {
                    Some((_, c)) => text.push(c),
                    None => return Err("a trailing backslash".to_string()),
                },
                c => text.push(c),
            }
        }
        words.push(Word {
            raw: s[start..end].to_string(),
            text,
        });
    }
    Ok(words)
}

/// Quote a value for a flags string only when it needs it.
pub fn quote(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '\\' | '$' | '`'))
    {
        return value.to_string();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A flag found in a flags string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    pub value: Option<String>,
}

/// A parsed flags string (`--a=b --c d --e`), editable without disturbing other flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagList {
    words: Vec<Word>,
}

/// Where a flag sits in `words`: its own word, and the word holding its value in `--f v` form.
struct Span {
    at: usize,
    name: String,
    value: Option<String>,
    value_word: Option<usize>,
}

impl FlagList {
    pub fn parse(s: &str) -> Result<FlagList, String> {
        Ok(FlagList {
            words: split_words(s)?,
        })
    }

    fn spans(&self) -> Vec<Span> {
        let mut spans = Vec::new();
        let mut i = 0;
        while i < self.words.len() {
            let t = &self.words[i].text;
            if let Some(body) = t.strip_prefix("--").or_else(|| t.strip_prefix('-')) {
                if let Some((name, value)) = body.split_once('=') {
                    spans.push(Span {
                        at: i,
                        name: name.to_string(),
                        value: Some(value.to_string()),
                        value_word: None,
                    });
                } else {
                    // `--flag value`: the kubelet takes no positional arguments, so a word after a
                    // flag that is not itself a flag is that flag's value — but not a `$VAR` of
                    // an `ExecStart=` line, which stands for flags of its own.
                    let next = self
                        .words
                        .get(i + 1)
                        .filter(|w| !w.text.starts_with('-') && !w.raw.starts_with('$'));
                    spans.push(Span {
                        at: i,
                        name: body.to_string(),
                        value: next.map(|w| w.text.clone()),
                        value_word: next.map(|_| i + 1),
                    });
                    if next.is_some() {
                        i += 1;
                    }
                }
            }
            i += 1;
        }
        spans
    }

    pub fn flags(&self) -> Vec<Flag> {
        self.spans()
            .into_iter()
            .map(|s| Flag {
                name: s.name,
                value: s.value,
            })
            .collect()
    }

    /// The value of the last occurrence (the one the kubelet uses). `Some(None)` for a bare flag.
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<Option<String>> {
        self.spans()
            .into_iter()
            .rev()
            .find(|s| s.name == name)
            .map(|s| s.value)
    }

    /// Remove every occurrence; true when one was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let doomed: Vec<usize> = self
            .spans()
            .into_iter()
            .filter(|s| s.name == name)
            .flat_map(|s| std::iter::once(s.at).chain(s.value_word))
            .collect();
        let mut i = 0;
        self.words.retain(|_| {
            i += 1;
            !doomed.contains(&(i - 1))
        });
        !doomed.is_empty()
    }

    /// Set a flag's value: in place (same form, `=` or space) when present, else appended.
    pub fn set(&mut self, name: &str, value: &str) {
        let spans: Vec<Span> = self
            .spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect();
        if spans.last().and_then(|s| s.value.as_deref()) == Some(value) && spans.len() == 1 {
            return;
        }
        match spans.last() {
            Some(last) => {
                let at = last.at;
                let prefix = if self.words[at].text.starts_with("--") {
                    "--"
                } else {
                    "-"
                };
                match last.value_word {
                    Some(vw) => {
                        self.words[vw] = Word {
                            raw: quote(value),
                            text: value.to_string(),
                        }
                    }
                    None => {
                        self.words[at] = Word {
                            raw: format!("{prefix}{name}={}", quote(value)),
                            text: format!("{prefix}{name}={value}"),
                        }
                    }
                }
                // Drop earlier duplicates so that exactly one value remains.
                let keep = at;
                let doomed: Vec<usize> = spans[..spans.len() - 1]
                    .iter()
                    .flat_map(|s| std::iter::once(s.at).chain(s.value_word))
                    .filter(|&i| i != keep)
                    .collect();
                let mut i = 0;
                self.words.retain(|_| {
                    i += 1;
                    !doomed.contains(&(i - 1))
                });
            }
            None => self.words.push(Word {
                raw: format!("--{name}={}", quote(value)),
                text: format!("--{name}={value}"),
            }),
        }
    }

    pub fn render(&self) -> String {
        self.words
            .iter()
            .map(|w| w.raw.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What kind of file holds the flags, which decides how assignments are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// `KEY="value"` lines, read through `EnvironmentFile=`.
    EnvFile,
    /// A systemd unit drop-in with `Environment="KEY=value"` lines.
    DropIn,
    /// A unit file (or drop-in) whose `ExecStart=` line holds the flags themselves.
    ExecStart,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Other(String),
    Env {
        raw: String,
        export: bool,
        key: String,
        value: String,
        quote: Option<char>,
        changed: bool,
        /// Written over several lines (`\\` at their ends): a new value is too, a flag a line.
        continued: bool,
    },
    Environment {
        raw: String,
        assigns: Vec<(String, String)>,
        changed: bool,
    },
}

/// An env file or drop-in, parsed into lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarsFile {
    pub kind: FileKind,
    lines: Vec<Line>,
    /// Lines systemd does not read as assignments (`export KEY=...`, no `=`, a name that is not
    /// a variable name): kept as they are, never edited; each described for a warning.
    pub ignored: Vec<String>,
}

impl VarsFile {
    pub fn parse(kind: FileKind, text: &str) -> Result<VarsFile, String> {
        let mut lines = Vec::new();
        let mut ignored = Vec::new();
        // A UTF-8 byte order mark is not part of the first line (systemd skips it too).
        let (bom, text) = match text.strip_prefix('\u{feff}') {
            Some(rest) => ("\u{feff}", rest),
            None => ("", text),
        };
        if !bom.is_empty() {
            lines.push(Line::Other(bom.to_string()));
        }
        // An env file's line ending in `\\` goes on on the next (systemd drops the backslash and
        // the newline): Kubespray's kubelet.env writes its long values so. Physical lines are
        // gathered into one logical line here, its raw text kept whole.
        let mut physical = text.split_inclusive('\n').enumerate().peekable();
        while let Some((n, first)) = physical.next() {
            let mut raw = first.to_string();
            let mut joined = first.trim_end_matches(['\n', '\r']).to_string();
            let mut continued = false;
            while kind == FileKind::EnvFile
                && joined.ends_with('\\')
                && !joined.trim_start().starts_with('#')
                && !joined.trim_start().starts_with(';')
            {
                let Some((_, next)) = physical.next() else {
                    break;
                };
                joined.pop();
                joined.push_str(next.trim_end_matches(['\n', '\r']));
                raw.push_str(next);
                continued = true;
            }
            let raw = raw.as_str();
            let body = joined.trim_start();
            let lineno = n + 1;
            let line = match kind {
                _ if body.is_empty() || body.starts_with('#') || body.starts_with(';') => {
                    Line::Other(raw.to_string())
                }
                FileKind::EnvFile => match systemd_ignores(body) {
                    Some(why) => {
                        ignored.push(format!("line {lineno} ({why})"));
                        Line::Other(raw.to_string())
                    }
                    None => parse_env_line(raw, body, continued)
                        .map_err(|e| format!("line {lineno}: {e}"))?,
                },
                FileKind::DropIn | FileKind::ExecStart => match body.strip_prefix("Environment=") {
                    Some(rest) => {
                        let words = split_words(rest).map_err(|e| format!("line {lineno}: {e}"))?;
                        let assigns = words
                            .into_iter()
                            .filter_map(|w| {
                                w.text
                                    .split_once('=')
                                    .map(|(k, v)| (k.to_string(), v.to_string()))
                            })
                            .collect();
                        Line::Environment {
                            raw: raw.to_string(),
                            assigns,
                            changed: false,
                        }
                    }
                    None => Line::Other(raw.to_string()),
                },
            };
            lines.push(line);
        }
        Ok(VarsFile {
            kind,
            lines,
            ignored,
        })
    }

    /// Every assignment, in file order.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for line in &self.lines {
            match line {
                Line::Env { key, value, .. } => out.push((key.clone(), value.clone())),
                Line::Environment { assigns, .. } => out.extend(assigns.iter().cloned()),
                Line::Other(_) => {}
            }
        }
        out
    }

    /// Lines of other kinds a drop-in may hold that matter to us (`EnvironmentFile=`, `ExecStart=`).
    pub fn directives(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}=");
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Other(raw) => raw.trim().strip_prefix(&prefix).map(str::to_string),
                _ => None,
            })
            .collect()
    }

    /// Rewrite the value of every assignment of `key`.
    pub fn edit(&mut self, key: &str, f: &mut dyn FnMut(&str) -> String) {
        for line in &mut self.lines {
            match line {
                Line::Env {
                    key: k,
                    value,
                    changed,
                    ..
                } if k == key => {
                    let new = f(value);
                    if new != *value {
                        *value = new;
                        *changed = true;
                    }
                }
                Line::Environment {
                    assigns, changed, ..
                } => {
                    for (_, value) in assigns.iter_mut().filter(|(k, _)| k == key) {
                        let new = f(value);
                        if new != *value {
                            *value = new;
                            *changed = true;
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Add `KEY="value"` at the end (env files only).
    pub fn append(&mut self, key: &str, value: &str) {
        if let Some(Line::Other(last))
        | Some(Line::Env { raw: last, .. })
        | Some(Line::Environment { raw: last, .. }) = self.lines.last_mut()
        {
            if !last.ends_with('\n') {
                last.push('\n');
            }
        }
        self.lines.push(Line::Env {
            raw: String::new(),
            export: false,
            key: key.to_string(),
            value: value.to_string(),
            quote: Some('"'),
            changed: true,
            continued: false,
        });
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Other(raw)
                | Line::Env {
                    raw,
                    changed: false,
                    ..
                }
                | Line::Environment {
                    raw,
                    changed: false,
                    ..
                } => out.push_str(raw),
                Line::Env {
                    raw,
                    export,
                    key,
                    value,
                    quote,
                    continued,
                    ..
                } => {
                    let export = if *export { "export " } else { "" };
                    // A long value stays long-form: each flag on a line of its own.
                    let rewrap = |v: String| {
                        if *continued {
                            v.replace(" --", " \\\n--")
                        } else {
                            v
                        }
                    };
                    let value = match quote {
                        Some('\'') if !value.contains('\'') => format!("'{value}'"),
                        None if !value.contains(char::is_whitespace)
                            && !value.contains(['"', '\'']) =>
                        {
                            value.clone()
                        }
                        _ => rewrap(format!(
                            "\"{}\"",
                            value.replace('\\', "\\\\").replace('"', "\\\"")
                        )),
                    };
                    let _ = write!(out, "{export}{key}={value}");
                    out.push_str(line_end(raw));
                }
                Line::Environment { raw, assigns, .. } => {
                    out.push_str("Environment=");
                    let parts: Vec<String> = assigns
                        .iter()
                        .map(|(k, v)| {
                            format!(
                                "\"{}\"",
                                format!("{k}={v}")
                                    .replace('\\', "\\\\")
                                    .replace('"', "\\\"")
                            )
                        })
                        .collect();
                    out.push_str(&parts.join(" "));
                    out.push_str(line_end(raw));
                }
            }
        }
        out
    }
}

fn line_end(raw: &str) -> &'static str {
    if raw.ends_with("\r\n") {
        "\r\n"
    } else if raw.ends_with('\n') || raw.is_empty() {
        "\n"
    } else {
        ""
    }
}

/// Why systemd's EnvironmentFile= parser skips a line, if it does: no `=`, or a name before it
/// that is not a variable name — `export KEY=value` among them (systemd logs "invalid variable
/// name" and ignores it; it is not a shell).
fn systemd_ignores(body: &str) -> Option<String> {
    let Some((key, _)) = body.split_once('=') else {
        return Some("no `=`: not an assignment".into());
    };
    let key = key.trim();
    if key.starts_with("export ") || key.starts_with("export\t") {
        return Some(format!(
            "`{}=…` starts with `export`, which systemd does not read as an assignment",
            key.chars().take(60).collect::<String>()
        ));
    }
    (!is_var_name(key)).then(|| {
        format!(
            "`{}` is not a variable name",
            key.chars().take(60).collect::<String>()
        )
    })
}

fn parse_env_line(raw: &str, body: &str, continued: bool) -> Result<Line, String> {
    let (export, rest) = match body.strip_prefix("export ") {
        Some(r) => (true, r.trim_start()),
        None => (false, body),
    };
    let (key, value) = rest
        .split_once('=')
        .ok_or_else(|| format!("`{body}` is not a KEY=value assignment"))?;
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("`{key}` is not a variable name"));
    }
    let quote = value
        .trim_start()
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '\''));
    let value = env_value(value).map_err(|q| {
        format!(
            "the value of {key} opens a {} quote that is never closed",
            if q == '"' { "double" } else { "single" }
        )
    })?;
    Ok(Line::Env {
        raw: raw.to_string(),
        export,
        key: key.to_string(),
        value,
        quote,
        changed: false,
        continued,
    })
}

/// An env file's value (after `=`, lines continued by `\` already joined) as systemd reads it
/// (`parse_env_file_internal`, proven by e2e scenario 24): leading whitespace skipped; a quote
/// opens only where a value (or a quoted part) may start (`'a'b"c d"` is `ab"c d"`); outside quotes a
/// backslash takes the next character as it is and trailing whitespace goes; in double quotes
/// `\"`, `\\`, `` \` `` and `\$` are the character, any other backslash stays; in single quotes
/// nothing is special; `#` after the value is part of it. Err(quote) where a quote is not closed
/// on the line (systemd would run on over the next lines: refused rather than guessed).
pub fn env_value(v: &str) -> Result<String, char> {
    enum S {
        Pre,
        Value,
        Single,
        Double,
    }
    let blank = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r');
    let mut out = String::new();
    // Where the run of unescaped whitespace at the end of an unquoted part began.
    let mut trailing: Option<usize> = None;
    let mut state = S::Pre;
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match state {
            S::Pre | S::Value if c == '\\' => {
                out.extend(chars.next());
                trailing = None;
                state = S::Value;
            }
            S::Pre if c == '\'' => state = S::Single,
            S::Pre if c == '"' => state = S::Double,
            S::Pre if blank(c) => {}
            S::Pre | S::Value => {
                if !blank(c) {
                    trailing = None;
                } else if trailing.is_none() {
                    trailing = Some(out.len());
                }
                out.push(c);
                state = S::Value;
            }
            S::Single if c == '\'' => state = S::Pre,
            S::Double if c == '"' => state = S::Pre,
            S::Double if c == '\\' => match chars.next() {
                Some(n @ ('"' | '\\' | '`' | '$')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => {}
            },
            S::Single | S::Double => out.push(c),
        }
    }
    match state {
        S::Single => return Err('\''),
        S::Double => return Err('"'),
        S::Value => {
            if let Some(i) = trailing {
                out.truncate(i);
            }
        }
        S::Pre => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_as_systemd_reads_them() {
        for (v, want) in [
            ("plain", "plain"),
            ("  lead and trail  ", "lead and trail"),
            (
                r#"one "two three" 'fo\o' x\ y"#,
                r#"one "two three" 'foo' x y"#,
            ),
            (r#""x\ty 'q r'""#, r#"x\ty 'q r'"#),
            (r#""esc \"q\" \\ back""#, r#"esc "q" \ back"#),
            (r#"'a'b"c d""#, r#"ab"c d""#),
            (r#""x" # c"#, "x# c"),
            ("foo # not a comment", "foo # not a comment"),
            (r"a\ ", "a "),
            ("", ""),
        ] {
            assert_eq!(env_value(v).as_deref(), Ok(want), "{v}");
        }
        assert_eq!(env_value("'open"), Err('\''));
        assert_eq!(env_value("\"open"), Err('"'));
    }

    #[test]
    fn splits_with_quotes() {
        let w = split_words(r#"--a=b --node-labels="x=1,y=2" --c 'd e' plain\ word"#).unwrap();
        let texts: Vec<&str> = w.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(
            texts,
            ["--a=b", "--node-labels=x=1,y=2", "--c", "d e", "plain word"]
        );
        assert_eq!(w[1].raw, r#"--node-labels="x=1,y=2""#);
        assert!(split_words(r#"--a="b"#).is_err());
        assert!(split_words("--a='b").is_err());
    }

    #[test]
    fn flags_in_both_forms() {
        let mut f = FlagList::parse("--network-plugin=cni --pod-infra-container-image k8s.gcr.io/pause:3.6 --v=2 --fail-swap-on").unwrap();
        assert_eq!(
            f.get("pod-infra-container-image"),
            Some(Some("k8s.gcr.io/pause:3.6".into()))
        );
        assert_eq!(f.get("fail-swap-on"), Some(None));
        assert!(f.remove("network-plugin"));
        assert!(!f.remove("network-plugin"));
        f.set("pod-infra-container-image", "mirror.local/pause:3.6");
        f.set(
            "container-runtime-endpoint",
            "unix:///run/containerd/containerd.sock",
        );
        assert_eq!(
            f.render(),
            "--pod-infra-container-image mirror.local/pause:3.6 --v=2 --fail-swap-on --container-runtime-endpoint=unix:///run/containerd/containerd.sock"
        );
    }

    #[test]
    fn set_keeps_one_value_and_quoting_of_others() {
        let mut f = FlagList::parse(r#"--a=1 --labels="x y" --a=2"#).unwrap();
        f.set("a", "3");
        assert_eq!(f.render(), r#"--labels="x y" --a=3"#);
        f.set("b", "has space");
        assert_eq!(f.render(), r#"--labels="x y" --a=3 --b="has space""#);
    }

    #[test]
    fn env_file_round_trips_and_edits_one_line() {
        let text = "# kubeadm\nKUBELET_KUBEADM_ARGS=\"--network-plugin=cni --v=2\"\nOTHER='x'\n";
        let mut f = VarsFile::parse(FileKind::EnvFile, text).unwrap();
        assert_eq!(f.render(), text);
        f.edit("KUBELET_KUBEADM_ARGS", &mut |v| {
            let mut l = FlagList::parse(v).unwrap();
            l.remove("network-plugin");
            l.render()
        });
        assert_eq!(
            f.render(),
            "# kubeadm\nKUBELET_KUBEADM_ARGS=\"--v=2\"\nOTHER='x'\n"
        );
    }

    #[test]
    fn env_file_errors_name_the_line() {
        let e =
            VarsFile::parse(FileKind::EnvFile, "A=1\nKUBELET_KUBEADM_ARGS=\"--v=2\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        // systemd skips what is not an assignment; so do we, and say so.
        let f = VarsFile::parse(
            FileKind::EnvFile,
            "\u{feff}no equals here\r\nexport KUBELET_KUBEADM_ARGS=\"--v=2\"\r\n2X=1\nA=1\r\n",
        )
        .unwrap();
        assert_eq!(f.vars(), [("A".to_string(), "1".to_string())]);
        assert_eq!(f.ignored.len(), 3, "{:?}", f.ignored);
        assert!(f.ignored[1].contains("starts with `export`"));
        assert_eq!(
            f.render(),
            "\u{feff}no equals here\r\nexport KUBELET_KUBEADM_ARGS=\"--v=2\"\r\n2X=1\nA=1\r\n",
            "kept byte for byte"
        );
    }

    #[test]
    fn drop_in_environment_lines() {
        let text = "[Service]\nEnvironment=\"KUBELET_NETWORK_ARGS=--network-plugin=cni --cni-bin-dir=/opt/cni/bin\"\nEnvironmentFile=-/etc/default/kubelet\nExecStart=\n";
        let mut f = VarsFile::parse(FileKind::DropIn, text).unwrap();
        assert_eq!(f.vars()[0].0, "KUBELET_NETWORK_ARGS");
        assert_eq!(f.directives("EnvironmentFile"), ["-/etc/default/kubelet"]);
        assert_eq!(f.render(), text);
        f.edit("KUBELET_NETWORK_ARGS", &mut |_| String::new());
        assert!(f
            .render()
            .contains("Environment=\"KUBELET_NETWORK_ARGS=\"\n"));
    }

    #[test]
    fn env_values_continued_over_lines_are_read_and_written_back_long_form() {
        // Kubespray's kubelet.env: KUBELET_ARGS continued with backslashes inside the quotes.
        let text = "A=\"--x=1\"\nKUBELET_ARGS=\"--a=1 \\\n--b=2 \\\n --c=3 \"\nB=2\n";
        let mut f = VarsFile::parse(FileKind::EnvFile, text).unwrap();
        assert_eq!(
            f.vars(),
            [
                ("A".to_string(), "--x=1".to_string()),
                (
                    "KUBELET_ARGS".to_string(),
                    "--a=1 --b=2  --c=3 ".to_string()
                ),
                ("B".to_string(), "2".to_string())
            ]
        );
        assert_eq!(f.render(), text, "unchanged, byte for byte");
        f.edit("KUBELET_ARGS", &mut |v| {
            let mut l = FlagList::parse(v).unwrap();
            l.remove("b");
            l.set("d", "4");
            l.render()
        });
        assert_eq!(
            f.render(),
            "A=\"--x=1\"\nKUBELET_ARGS=\"--a=1 \\\n--c=3 \\\n--d=4\"\nB=2\n"
        );
        // A `$VAR` word of an ExecStart= line is never a flag's value.
        let l = FlagList::parse("--network-plugin $NET --cni").unwrap();
        assert_eq!(l.flags()[0].value, None);
    }
}
