//! A systemd unit as systemd reads it (systemd.unit(5), systemd.service(5), systemd.exec(5)):
//! its file, its drop-ins, its `ExecStart=`, `Environment=`, `EnvironmentFile=` and
//! dependencies, and the command line it runs, each word with the file, line and variable it
//! came from — so that an edit can go back to where the word lives.
//!
//! The rules, each from systemd's documentation:
//! - the unit file is the first found in `/etc/systemd/system`, `/run/systemd/system`,
//!   `/usr/local/lib/systemd/system`, `/usr/lib/systemd/system`, `/lib/systemd/system`;
//! - its drop-ins are `NAME.d/*.conf` in all of those (and `service.d/` for every service),
//!   applied in the order of their file names; a drop-in of the same name in a directory that
//!   comes earlier in that list replaces the later one;
//! - a line ending in `\` goes on on the next line; `#` and `;` start comments;
//! - an empty assignment (`ExecStart=`, `Environment=`...) resets the list built so far;
//! - `EnvironmentFile=` (a leading `-`: the file may be missing) overrides `Environment=`, and a
//!   later file a former one;
//! - in `ExecStart=`, `${VAR}` is replaced by the variable's value as one word (or part of
//!   one), and `$VAR` standing as a word of its own by its value split at whitespace (zero or
//!   more words); `$$` is a `$`; a command prefixed with `:` is not expanded; `%` specifiers
//!   are left as they are, and said.

use crate::flags::is_var_name;
use crate::node::Node;
use anyhow::Result;
use serde::Serialize;

/// Where systemd looks for units, first wins (the system manager's search path, less the
/// runtime-only and generator directories a node image does not hold).
pub const UNIT_DIRS: [&str; 5] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The most a unit's expanded command line may hold: Linux passes at most a quarter of the
/// stack limit (2 MiB by default) to a program; twice that leaves room and bounds the work.
/// Each word counts its pointer too (8 bytes), as the kernel counts it.
pub const MAX_COMMAND_BYTES: usize = 4 << 20;

/// The most a unit's files together (fragment and drop-ins), or its environment files
/// together, may hold: real ones hold kilobytes.
pub const MAX_UNIT_BYTES: usize = 64 << 20;

fn too_much(file: &str, what: &str) -> anyhow::Error {
    crate::error::Failure::bad_input(
        file,
        format!(
            "{what} hold more than {} MiB together, which no real unit does",
            MAX_UNIT_BYTES >> 20
        ),
        "Check the unit's files: something that is not a unit setting was put there.",
    )
    .into()
}

/// What reading a unit could not do or did not do, one sentence each.
pub type Notes = Vec<String>;

/// A file and line of the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

/// One assignment of a unit's setting, where it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitValue {
    pub value: String,
    /// Its first line.
    pub origin: Origin,
    /// Where in the value a continued line joined the next (byte offsets): the line of a word
    /// is the origin's plus the joins before it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub joins: Vec<usize>,
}

impl UnitValue {
    fn new(value: String, origin: Origin) -> UnitValue {
        UnitValue {
            value,
            origin,
            joins: vec![],
        }
    }

    /// The file and line of the text at `offset` of the value.
    fn origin_at(&self, offset: usize) -> Origin {
        Origin {
            file: self.origin.file.clone(),
            // The joins are in order: a binary search, not a count over all of them.
            line: self.origin.line + self.joins.partition_point(|j| *j <= offset),
        }
    }
}

/// One word of the command line the unit runs, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Word {
    pub text: String,
    /// The `ExecStart=` line that holds it (or the `$VAR` it was expanded from).
    pub origin: Origin,
    /// The variable it was expanded from, and where that variable was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variable: Option<Variable>,
}

/// A variable a word was expanded from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variable {
    pub name: String,
    pub set_at: Origin,
}

fn var(name: &str, set_at: &Origin) -> Option<Variable> {
    Some(Variable {
        name: name.to_string(),
        set_at: set_at.clone(),
    })
}

/// The command line a unit runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command {
    pub argv: Vec<Word>,
    /// The variables the line expands as words of their own (`$VAR`), set or not, in order:
    /// where flags can be added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expands: Vec<String>,
    /// What the expansion could not do, or did not do: specifiers left alone, variables that
    /// are not set, an environment file that is missing.
    pub notes: Vec<String>,
}

impl Command {
    pub fn args(&self) -> Vec<&str> {
        self.argv.iter().map(|w| w.text.as_str()).collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unit {
    pub name: String,
    /// The unit file, as a node path; `None` for a unit made of drop-ins only.
    pub fragment: Option<String>,
    /// Its drop-ins, in the order they apply.
    pub dropins: Vec<String>,
    /// The `ExecStart=` lines in force (after resets).
    pub exec_start: Vec<UnitValue>,
    /// `Environment=` words (`NAME=value`) in force, in order.
    pub environment: Vec<UnitValue>,
    /// `EnvironmentFile=` values in force, in order (with their `-`).
    pub environment_files: Vec<UnitValue>,
    pub requires: Vec<String>,
    pub binds_to: Vec<String>,
    /// `PartOf=`: a stop or restart of those units is propagated to this one.
    pub part_of: Vec<String>,
    pub after: Vec<String>,
    pub wants: Vec<String>,
    /// Every other `[Service]` setting in force by key (the last assignment wins, an empty one
    /// resets it): KillMode, LimitNOFILE...
    pub service: std::collections::BTreeMap<String, String>,
}

/// A unit file's lines as systemd reads them: continuations joined, comments and blank lines
/// dropped, each `(section, key, value, line)`.
/// One `Key=value` of a unit file: its section, key, value (with the joins of continued lines,
/// as offsets in the value) and first line.
struct Assignment {
    section: String,
    key: String,
    value: String,
    joins: Vec<usize>,
    line: usize,
}

fn assignments(text: &str) -> Vec<Assignment> {
    let mut out = Vec::new();
    let mut section = String::new();
    // The logical line so far, its first line, and where continued lines joined it.
    let mut pending: Option<(String, usize, Vec<usize>)> = None;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut take = |body: &str, line: usize, joins: Vec<usize>, section: &mut String| {
        let lead = body.len() - body.trim_start().len();
        let body = body.trim();
        if body.is_empty() {
            return;
        }
        if body.starts_with('[') && body.ends_with(']') {
            *section = body[1..body.len() - 1].to_string();
        } else if let Some((k, v)) = body.split_once('=') {
            // Offsets in the value: past the key, the `=` and the value's leading blanks.
            let shift = lead + k.len() + 1 + (v.len() - v.trim_start().len());
            out.push(Assignment {
                section: section.clone(),
                key: k.trim().to_string(),
                value: v.trim().to_string(),
                joins: joins.iter().filter_map(|j| j.checked_sub(shift)).collect(),
                line,
            });
        }
    };
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let (mut joined, start, mut joins) = match pending.take() {
            Some((mut before, start, mut joins)) => {
                // systemd joins with a space; the blanks before the backslash add nothing.
                // Appended in place: a unit of many continued lines is read in linear time.
                before.truncate(before.trim_end().len());
                joins.push(before.len());
                before.push(' ');
                before.push_str(line.trim_start());
                (before, start, joins)
            }
            None => {
                let t = line.trim_start();
                if t.starts_with('#') || t.starts_with(';') {
                    continue;
                }
                (t.to_string(), n + 1, vec![])
            }
        };
        if joined.ends_with('\\') {
            joined.pop();
            pending = Some((joined, start, std::mem::take(&mut joins)));
            continue;
        }
        take(&joined, start, joins, &mut section);
    }
    // A backslash on the last line continues into nothing: the line stands as it is.
    if let Some((joined, start, joins)) = pending {
        take(&joined, start, joins, &mut section);
    }
    out
}

/// A list setting: an empty assignment resets it, others append.
fn assign(list: &mut Vec<UnitValue>, a: &Assignment, origin: Origin) {
    if a.value.is_empty() {
        list.clear();
    } else {
        list.push(UnitValue {
            value: a.value.clone(),
            origin,
            joins: a.joins.clone(),
        });
    }
}

fn assign_names(list: &mut Vec<String>, value: &str) {
    if value.is_empty() {
        list.clear();
    } else {
        list.extend(value.split_whitespace().map(str::to_string));
    }
}

impl Unit {
    /// The unit `name` (`kubelet.service`) as systemd would load it from the node's files;
    /// `None` when neither a file nor a drop-in of it exists.
    pub fn load(node: &Node, name: &str) -> Result<Option<Unit>> {
        let fragment = UNIT_DIRS
            .iter()
            .map(|d| crate::node::join(d, name))
            .find(|p| node.is_file(p));
        // Drop-ins by file name; the earliest directory wins a name.
        let mut by_name: std::collections::BTreeMap<String, String> = Default::default();
        let mut dirs = vec![format!("{name}.d")];
        if let Some((_, kind)) = name.rsplit_once('.') {
            dirs.push(format!("{kind}.d"));
        }
        for d in UNIT_DIRS.iter().rev() {
            // Later in the reversed walk = earlier in the search path = wins.
            for sub in dirs.iter().rev() {
                let dir = crate::node::join(d, sub);
                for f in node.list(&dir) {
                    if f.ends_with(".conf") {
                        by_name.insert(f.clone(), crate::node::join(&dir, &f));
                    }
                }
            }
        }
        if fragment.is_none() && by_name.is_empty() {
            return Ok(None);
        }
        let mut unit = Unit {
            name: name.to_string(),
            fragment: fragment.clone(),
            ..Unit::default()
        };
        let files: Vec<String> = fragment.into_iter().chain(by_name.into_values()).collect();
        let mut read = 0usize;
        for file in &files {
            let Some(text) = node.read(file)? else {
                continue;
            };
            read += text.len();
            if read > MAX_UNIT_BYTES {
                return Err(too_much(file, &format!("{name}'s unit file and drop-ins")));
            }
            if Some(file) != unit.fragment.as_ref() {
                unit.dropins.push(file.clone());
            }
            for a in assignments(&text) {
                let origin = Origin {
                    file: file.clone(),
                    line: a.line,
                };
                let value = &a.value;
                match (a.section.as_str(), a.key.as_str()) {
                    ("Service", "ExecStart") => assign(&mut unit.exec_start, &a, origin),
                    ("Service", "Environment") => {
                        if value.is_empty() {
                            unit.environment.clear();
                        }
                        for w in words(value, true) {
                            unit.environment.push(UnitValue::new(w, origin.clone()));
                        }
                    }
                    ("Service", "EnvironmentFile") => {
                        assign(&mut unit.environment_files, &a, origin)
                    }
                    ("Unit", "Requires") => assign_names(&mut unit.requires, value),
                    ("Unit", "BindsTo") => assign_names(&mut unit.binds_to, value),
                    ("Unit", "PartOf") => assign_names(&mut unit.part_of, value),
                    ("Unit", "After") => assign_names(&mut unit.after, value),
                    ("Unit", "Wants") => assign_names(&mut unit.wants, value),
                    ("Service", key) => {
                        if value.is_empty() {
                            unit.service.remove(key);
                        } else {
                            unit.service.insert(key.to_string(), value.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Some(unit))
    }

    /// Each `EnvironmentFile=`'s path as written (specifiers not replaced), and whether it is
    /// optional (`-`).
    pub fn env_file_paths(&self) -> impl Iterator<Item = (bool, &str)> {
        self.environment_files
            .iter()
            .map(|f| match f.value.strip_prefix('-') {
                Some(p) => (true, p.trim()),
                None => (false, f.value.trim()),
            })
    }

    /// The environment the unit's command sees from its own settings: `Environment=` first,
    /// then each `EnvironmentFile=` in order, a later value winning. Each variable with where
    /// it was set. Notes say which files were missing.
    pub fn env(&self, node: &Node) -> Result<(Vec<(String, UnitValue)>, Notes)> {
        // Every assignment in order; the last of each name wins, at the place of that last
        // one (as a remove-then-push would leave it), sorted out once at the end: linear.
        let mut vars: Vec<(String, UnitValue)> = Vec::new();
        let mut notes = Vec::new();
        let mut set = |name: String, s: UnitValue| vars.push((name, s));
        let mut read = 0usize;
        // Specifiers are replaced when systemd loads `Environment=` and `EnvironmentFile=`; the
        // files' own text is taken as it is.
        let specifiers = Specifiers::new(&self.name, node);
        for e in &self.environment {
            let word = specifiers.replace(&e.value, &mut notes);
            if let Some((k, v)) = word.split_once('=') {
                set(
                    k.to_string(),
                    UnitValue::new(v.to_string(), e.origin.clone()),
                );
            }
        }
        for (f, (optional, path)) in self.environment_files.iter().zip(self.env_file_paths()) {
            let path = &specifiers.replace(path, &mut notes);
            let text = node.read(path)?;
            if let Some(t) = &text {
                read += t.len();
                if read > MAX_UNIT_BYTES {
                    return Err(too_much(
                        path,
                        &format!("{}'s environment files", self.name),
                    ));
                }
            }
            let Some(text) = text else {
                notes.push(if optional {
                    format!("{path} (EnvironmentFile=-, {}:{}) is missing: skipped", f.origin.file, f.origin.line)
                } else {
                    format!("{path} (EnvironmentFile=, {}:{}) is missing: systemd would not start the unit", f.origin.file, f.origin.line)
                });
                continue;
            };
            for (n, line) in env_lines(&text) {
                let Ok(parsed) =
                    crate::flags::VarsFile::parse(crate::flags::FileKind::EnvFile, &line)
                else {
                    notes.push(format!("{path}:{n}: not read as an assignment"));
                    continue;
                };
                for (k, v) in parsed.vars() {
                    set(
                        k,
                        UnitValue::new(
                            v,
                            Origin {
                                file: path.to_string(),
                                line: n,
                            },
                        ),
                    );
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut last: Vec<(String, UnitValue)> = vars
            .into_iter()
            .rev()
            .filter(|(n, _)| seen.insert(n.clone()))
            .collect();
        last.reverse();
        Ok((last, notes))
    }

    /// The command line of the unit's (last) `ExecStart=`, expanded as systemd expands it.
    pub fn command(&self, node: &Node) -> Result<Option<Command>> {
        let Some(exec) = self.exec_start.last() else {
            return Ok(None);
        };
        let (vars, mut notes) = self.env(node)?;
        let specifiers = Specifiers::new(&self.name, node);
        let by_name: std::collections::HashMap<&str, &UnitValue> =
            vars.iter().map(|(n, s)| (n.as_str(), s)).collect();
        let lookup = |name: &str| by_name.get(name).copied();
        // What the expansion has made so far, bounded: a variable expanded many times cannot
        // make more than the kernel would pass to a program.
        let mut size = 0usize;
        let mut grow = |by: usize| -> Result<()> {
            size += by;
            if size > MAX_COMMAND_BYTES {
                return Err(crate::error::Failure::bad_input(
                    &exec.origin.file,
                    format!(
                        "the ExecStart= of line {} expands to more than {} MiB, more than the kernel passes to a program (systemd could not start it either)",
                        exec.origin.line,
                        MAX_COMMAND_BYTES >> 20
                    ),
                    "Fix the unit's command line and the variables it expands.",
                )
                .into());
            }
            Ok(())
        };
        let (line, expand) = without_prefixes(&exec.value);
        let mut argv = Vec::new();
        let mut expands = Vec::new();
        // Each word's place in the value, for the line it stands on.
        let mut from = exec.value.len() - line.len();
        for raw in split_raw(line) {
            let at = exec.value[from..]
                .find(raw.as_str())
                .map(|i| from + i)
                .unwrap_or(from);
            from = at + raw.len();
            let here = exec.origin_at(at);
            // As systemd loads the line: the word unquoted (C escapes too), then its specifiers
            // (`%n`, `%%`...) replaced; variables are expanded later, when it runs.
            let text = specifiers.replace(&unquote_exec(&raw, true), &mut notes);
            if !expand {
                grow(text.len() + 8)?;
                argv.push(Word {
                    text,
                    origin: here.clone(),
                    variable: None,
                });
                continue;
            }
            // A word that is exactly `$VAR` — quoted or not: the quotes went at load — is the
            // value split at whitespace, quotes in the value honoured.
            if let Some(name) = text.strip_prefix('$').filter(|n| is_var_name(n)) {
                expands.push(name.to_string());
                match lookup(name) {
                    Some(s) => {
                        let words = words(&s.value, false);
                        grow(s.value.len() + 8 * words.len())?;
                        argv.extend(words.into_iter().map(|text| Word {
                            text,
                            origin: s.origin.clone(),
                            variable: var(name, &s.origin),
                        }))
                    }
                    None => notes.push(format!("${name} is not set: no word")),
                }
                continue;
            }
            // `${VAR}` anywhere: replaced in place, one word.
            let (out, var_from) = expand_braced(&text, &lookup, &mut grow, &mut notes)?;
            grow(out.len() + 8)?;
            argv.push(Word {
                text: out,
                origin: here,
                variable: var_from,
            });
        }
        Ok(Some(Command {
            argv,
            expands,
            notes,
        }))
    }
}

/// An `ExecStart=` value without its prefixes (`-` `@` `+` `!` `!!` change how it runs, `:`
/// turns expansion off), and whether variables are expanded.
fn without_prefixes(value: &str) -> (&str, bool) {
    let mut line = value.trim_start();
    let mut expand = true;
    while let Some(c) = line.chars().next().filter(|c| "-@+!:|".contains(*c)) {
        if c == ':' {
            expand = false;
        }
        line = &line[1..];
    }
    (line, expand)
}

/// A word with each `${VAR}` replaced by its value in place (`$$` is `$`), and the variable
/// that gave it its value (the last); `grow` bounds what the expansion makes.
fn expand_braced<'v>(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<&'v UnitValue>,
    grow: &mut dyn FnMut(usize) -> Result<()>,
    notes: &mut Vec<String>,
) -> Result<(String, Option<Variable>)> {
    let mut out = String::new();
    let mut var_from: Option<Variable> = None;
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some((name, r)) = after
            .strip_prefix('{')
            .and_then(|a| a.split_once('}'))
            .filter(|(n, _)| is_var_name(n))
        {
            match lookup(name) {
                Some(s) => {
                    grow(s.value.len())?;
                    out.push_str(&s.value);
                    var_from = var(name, &s.origin);
                }
                None => notes.push(format!("${{{name}}} is not set: replaced by nothing")),
            }
            rest = r;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok((out, var_from))
}

/// The dependency settings of `[Unit]` whose units must follow the runtime.
const DEPENDENCY_KEYS: [&str; 6] = [
    "Requires",
    "BindsTo",
    "Requisite",
    "Wants",
    "After",
    "PartOf",
];

/// A unit file's dependencies on the units `from` (`Requires=docker.service`...) turned into
/// dependencies on `to`, in `[Unit]`; `PartOf=` on them is dropped (it ties a stop, not a
/// start). A line left with nothing goes. Returns the new text and each change, said.
pub fn replace_dependencies(text: &str, from: &[&str], to: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut said = Vec::new();
    let mut section = String::new();
    for raw in text.split_inclusive('\n') {
        let body = raw.trim();
        if body.starts_with('[') && body.ends_with(']') {
            section = body[1..body.len() - 1].to_string();
        }
        let parsed = body.split_once('=').map(|(k, v)| (k.trim(), v));
        let Some((key, value)) =
            parsed.filter(|(k, _)| section == "Unit" && DEPENDENCY_KEYS.contains(k))
        else {
            out.push_str(raw);
            continue;
        };
        let names: Vec<&str> = value.split_whitespace().collect();
        if !names.iter().any(|n| from.contains(n)) {
            out.push_str(raw);
            continue;
        }
        let mut kept: Vec<&str> = Vec::new();
        for n in &names {
            let n = if from.contains(n) {
                if key == "PartOf" {
                    continue;
                }
                to
            } else {
                n
            };
            if !kept.contains(&n) {
                kept.push(n);
            }
        }
        let old: Vec<&str> = names.iter().copied().filter(|n| from.contains(n)).collect();
        said.push(if key == "PartOf" {
            format!("{key}={} dropped", old.join(" "))
        } else {
            format!("{key}={} becomes {key}={to}", old.join(" "))
        });
        if !kept.is_empty() {
            let end = &raw[raw.trim_end_matches(['\n', '\r']).len()..];
            out.push_str(&format!("{key}={}{end}", kept.join(" ")));
        }
    }
    (out, said)
}

/// The value of the `ExecStart=` assignment that starts on `line` (1-based), continued lines
/// joined as systemd joins them.
pub fn exec_start_value(text: &str, line: usize) -> Result<String, String> {
    assignments(text)
        .into_iter()
        .find(|a| a.line == line && a.key == "ExecStart")
        .map(|a| a.value)
        .ok_or_else(|| format!("line {line} is not an ExecStart= line"))
}

/// Replace the value of the `ExecStart=` assignment that starts on `line` (1-based) of a unit
/// file's text, continued lines and all. A value that was continued stays so: a line for each
/// flag or variable, indented as its second line was.
pub fn replace_exec_start(text: &str, line: usize, value: &str) -> Result<String, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let first = line
        .checked_sub(1)
        .and_then(|i| lines.get(i))
        .filter(|l| l.trim_start().starts_with("ExecStart="))
        .ok_or_else(|| format!("line {line} is not an ExecStart= line"))?;
    let mut last = line - 1;
    while lines[last].trim_end_matches(['\n', '\r']).ends_with('\\') && last + 1 < lines.len() {
        last += 1;
    }
    let lead = &first[..first.len() - first.trim_start().len()];
    let end = if lines[last].ends_with("\r\n") {
        "\r\n"
    } else if lines[last].ends_with('\n') {
        "\n"
    } else {
        ""
    };
    let new = if last > line - 1 {
        let second = lines[line];
        let indent = &second[..second.len() - second.trim_start().len()];
        let indent = if indent.is_empty() { "\t" } else { indent };
        value
            .replace(" --", &format!(" \\{end}{indent}--"))
            .replace(" $", &format!(" \\{end}{indent}$"))
    } else {
        value.to_string()
    };
    let mut out: String = lines[..line - 1].concat();
    out.push_str(&format!("{lead}ExecStart={new}{end}"));
    out.push_str(&lines[last + 1..].concat());
    Ok(out)
}

/// An environment file's logical lines with the number of the first physical line of each: a
/// line ending in a backslash goes on on the next (systemd removes the backslash and the
/// newline), as Kubespray's `kubelet.env` writes its long values.
fn env_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let (start, mut joined) = match pending.take() {
            Some((start, before)) => (start, before + line),
            None => (n + 1, line.to_string()),
        };
        if joined.ends_with('\\') && !joined.trim_start().starts_with('#') {
            joined.pop();
            pending = Some((start, joined));
            continue;
        }
        out.push((start, joined));
    }
    out.extend(pending);
    out
}

/// Words unquoted as systemd does. `Environment=` words with `cunescape`: `"A=b c" D=e` gives
/// `A=b c` and `D=e` (split as a command line's: quotes and C escapes). A `$VAR` word's value
/// without, as systemd splits it when it runs the command (`strv_split_full(…,
/// EXTRACT_RELAX|EXTRACT_UNQUOTE)`): quotes removed, a backslash takes the next character as it
/// is.
pub(crate) fn words(value: &str, cunescape: bool) -> Vec<String> {
    split_raw(value)
        .iter()
        .map(|raw| unquote_exec(raw, cunescape))
        .collect()
}

/// Words as systemd's `extract_first_word` finds them (quotes kept: the raw text): separated by
/// space, tab, CR or LF outside quotes; a backslash escapes the next character in or out of
/// quotes (so `'a\'b'` is one word); an unbalanced quote runs to the end (`EXTRACT_RELAX`).
fn split_raw(line: &str) -> Vec<String> {
    const SEPARATORS: [char; 4] = [' ', '\t', '\n', '\r'];
    let mut out = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if SEPARATORS.contains(&c) {
            chars.next();
            continue;
        }
        let mut quote: Option<char> = None;
        let mut end = line.len();
        while let Some((i, c)) = chars.next() {
            match (c, quote) {
                ('\\', _) => {
                    chars.next();
                }
                ('\'' | '"', None) => quote = Some(c),
                (q, Some(open)) if q == open => quote = None,
                (c, None) if SEPARATORS.contains(&c) => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        out.push(line[start..end].to_string());
    }
    out
}

/// A command line's word as systemd loads it (`extract_first_word` with unquoting and, with
/// `cunescape`, C unescaping): single and double quotes removed, and in or out of them the C
/// escapes `\a \b \f \n \r \t \v \\ \" \' \s`, `\xHH`, `\NNN` (octal) and `\uXXXX` taken;
/// without it a backslash takes the next character as it is.
fn unquote_exec(raw: &str, cunescape: bool) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\'', None) | ('"', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            ('\\', _) => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                if !cunescape {
                    out.push(e);
                    continue;
                }
                let mut code = |n: usize, radix: u32, first: Option<char>| {
                    let mut s: String = first.into_iter().collect();
                    while s.len() < n {
                        match chars.peek() {
                            Some(d) if d.is_digit(radix) => s.push(chars.next().unwrap()),
                            _ => break,
                        }
                    }
                    u32::from_str_radix(&s, radix).ok().and_then(char::from_u32)
                };
                let decoded = match e {
                    'a' => Some('\u{7}'),
                    'b' => Some('\u{8}'),
                    'f' => Some('\u{c}'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\u{b}'),
                    's' => Some(' '),
                    'x' => code(2, 16, None),
                    'u' => code(4, 16, None),
                    'U' => code(8, 16, None),
                    '0'..='7' => code(3, 8, Some(e)),
                    other => Some(other),
                };
                out.push(decoded.unwrap_or(e));
            }
            (c, _) => out.push(c),
        }
    }
    out
}

/// The specifiers systemd replaces when it loads a line (systemd.unit(5) "Specifiers"), for the
/// system manager, in one unit: the node's files they need (`%H`, `%l`, `%m`) read once, when
/// first asked. What the model cannot know (the boot ID, a live kernel's release) is left as it
/// is, and said once per word.
struct Specifiers<'a> {
    unit: &'a str,
    node: &'a Node,
    hostname: std::cell::OnceCell<Option<String>>,
    machine_id: std::cell::OnceCell<Option<String>>,
}

/// A host name or machine ID longer than this is not one (HOST_NAME_MAX is 64, a machine ID 32
/// hex digits): such a file is not taken, so that no specifier can make a word grow without end.
const MAX_SPECIFIER_VALUE: usize = 255;

impl<'a> Specifiers<'a> {
    fn new(unit: &'a str, node: &'a Node) -> Self {
        Specifiers {
            unit,
            node,
            hostname: Default::default(),
            machine_id: Default::default(),
        }
    }

    fn read(&self, path: &str) -> Option<String> {
        self.node
            .read(path)
            .ok()
            .flatten()
            .map(|s| s.trim().to_string())
            .filter(|s| s.len() <= MAX_SPECIFIER_VALUE)
    }

    /// `word` with its specifiers replaced. The replacement stops once the word is past
    /// [`MAX_COMMAND_BYTES`] (the caller refuses such a word).
    fn replace(&self, word: &str, notes: &mut Notes) -> String {
        if !word.contains('%') {
            return word.to_string();
        }
        let unit = self.unit;
        let (prefix_instance, _suffix) = unit.rsplit_once('.').unwrap_or((unit, ""));
        let (prefix, instance) = match prefix_instance.split_once('@') {
            Some((p, i)) => (p, i),
            None => (prefix_instance, ""),
        };
        let hostname = || {
            self.hostname
                .get_or_init(|| self.read("/etc/hostname"))
                .clone()
        };
        let mut unknown = std::collections::BTreeSet::new();
        let mut out = String::new();
        let mut chars = word.chars();
        while let Some(c) = chars.next() {
            if out.len() > MAX_COMMAND_BYTES {
                break;
            }
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(s) = chars.next() else {
                out.push('%');
                break;
            };
            let value: Option<String> = match s {
                '%' => Some("%".into()),
                'n' => Some(unit.into()),
                'N' => Some(prefix_instance.into()),
                'p' => Some(prefix.into()),
                'P' => Some(prefix.replace('-', "/")),
                'i' => Some(instance.into()),
                'I' => Some(instance.replace('-', "/")),
                'j' => Some(prefix.rsplit('-').next().unwrap_or(prefix).into()),
                't' => Some("/run".into()),
                'S' => Some("/var/lib".into()),
                'C' => Some("/var/cache".into()),
                'L' => Some("/var/log".into()),
                'E' => Some("/etc".into()),
                'T' => Some("/tmp".into()),
                'V' => Some("/var/tmp".into()),
                'h' => Some("/root".into()),
                'u' | 'g' => Some("root".into()),
                'U' | 'G' => Some("0".into()),
                's' => Some("/bin/sh".into()),
                'H' => Some(hostname().unwrap_or_default()),
                'l' => Some(
                    hostname()
                        .unwrap_or_default()
                        .split('.')
                        .next()
                        .unwrap_or("")
                        .into(),
                ),
                'm' => Some(
                    self.machine_id
                        .get_or_init(|| self.read("/etc/machine-id"))
                        .clone()
                        .unwrap_or_default(),
                ),
                _ => None,
            };
            match value {
                Some(v) => out.push_str(&v),
                None => {
                    unknown.insert(s);
                    out.push('%');
                    out.push(s);
                }
            }
        }
        if !unknown.is_empty() {
            let named: Vec<String> = unknown.iter().map(|s| format!("`%{s}`")).collect();
            let shown: String = word.chars().take(120).collect();
            notes.push(format!(
                "{} in `{shown}{}` {} the model does not know: left as {}",
                named.join(", "),
                if shown.len() < word.len() { "…" } else { "" },
                if named.len() == 1 {
                    "is a specifier"
                } else {
                    "are specifiers"
                },
                if named.len() == 1 {
                    "it is"
                } else {
                    "they are"
                },
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::node::test_node as node;

    /// A node of these files, and the unit of the first loaded from it.
    fn loaded(files: &[(&str, &str)]) -> (tempfile::TempDir, Node, Unit) {
        let (d, n) = node(files);
        let name = files[0].0.rsplit('/').next().unwrap();
        let u = Unit::load(&n, name).unwrap().unwrap();
        (d, n, u)
    }

    const KUBEADM_UNIT: &str = "[Unit]\nDescription=kubelet\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nExecStart=/usr/bin/kubelet\nRestart=always\n";
    const KUBEADM_DROPIN: &str = "[Service]\nEnvironment=\"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf\"\nEnvironment=\"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml\"\nEnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\nEnvironmentFile=-/etc/default/kubelet\nExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS\n";

    /// A hostile image: specifiers cannot make a word grow without end (a host name that is no
    /// host name is not taken, replacement stops past the command-line bound) and unknown ones
    /// are said once per word, never once per occurrence.
    #[test]
    fn specifiers_are_bounded_and_said_once() {
        let huge_hostname = "h".repeat(1 << 20);
        let many_h = "%H".repeat(200_000);
        let many_unknown = format!("--x={}", "%b".repeat(200_000));
        let unit = format!("[Service]\nExecStart=/bin/k {many_h} {many_unknown}\n");
        let (_d, n, u) = loaded(&[
            ("/etc/systemd/system/k.service", unit.as_str()),
            ("/etc/hostname", huge_hostname.as_str()),
        ]);
        let c = u.command(&n).unwrap().unwrap();
        assert_eq!(c.argv[1].text, "", "a 1 MiB host name is not taken");
        let said: Vec<&String> = c.notes.iter().filter(|x| x.contains("`%b`")).collect();
        assert_eq!(said.len(), 1, "{} notes", c.notes.len());
        assert!(said[0].len() < 400, "{}", said[0].len());
        // A real host name, repeated past the bound: refused as too long, not expanded on.
        let (_d2, n2, u) = loaded(&[
            ("/etc/systemd/system/k.service", unit.as_str()),
            ("/etc/hostname", &"a".repeat(60)),
        ]);
        let e = u.command(&n2).unwrap_err();
        assert!(format!("{e:#}").contains("expands to more than"), "{e:#}");
    }

    /// What systemd 252 ran for these lines (tests/e2e/unit_forms.py, e2e scenario 24).
    #[test]
    fn words_split_and_unquoted_as_systemd_does() {
        let unit = "[Service]\nEnvironment=\"A=x\\ty  z\" B=100%%\\x41\nEnvironmentFile=/etc/default/k\nExecStart=/bin/rec a \"b c\" 'd e' \"f\\\"g\" 'h\\'i' j\\tk \"l\\\\m\" ${A} ${B} $C ${C} $D\n";
        let env = "C=one \"two three\" 'fo\\o' x\\ y\nD=\"x\\ty 'q r'\"\n";
        let (_d, n, u) = loaded(&[
            ("/etc/systemd/system/k.service", unit),
            ("/etc/default/k", env),
        ]);
        let c = u.command(&n).unwrap().unwrap();
        assert_eq!(
            c.args(),
            [
                "/bin/rec",
                "a",
                "b c",
                "d e",
                "f\"g",
                "h'i",
                "j\tk",
                "l\\m",
                "x\ty  z",
                "100%A",
                "one",
                "two three",
                "foo",
                "x",
                "y",
                "one \"two three\" 'foo' x y",
                "xty",
                "q r",
            ]
        );
    }

    #[test]
    fn kubeadm_layout_gives_the_kubelets_argv_with_where_each_word_lives() {
        let (_d, n, u) = loaded(&[
            ("/lib/systemd/system/kubelet.service", KUBEADM_UNIT),
            ("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", KUBEADM_DROPIN),
            (
                "/var/lib/kubelet/kubeadm-flags.env",
                "KUBELET_KUBEADM_ARGS=\"--network-plugin=cni --pod-infra-container-image=k8s.gcr.io/pause:3.2\"\n",
            ),
        ]);
        assert_eq!(
            u.fragment.as_deref(),
            Some("/lib/systemd/system/kubelet.service")
        );
        assert_eq!(
            u.exec_start.len(),
            1,
            "the empty ExecStart= reset the unit's own"
        );
        let c = u.command(&n).unwrap().unwrap();
        assert_eq!(
            c.args(),
            [
                "/usr/bin/kubelet",
                "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
                "--kubeconfig=/etc/kubernetes/kubelet.conf",
                "--config=/var/lib/kubelet/config.yaml",
                "--network-plugin=cni",
                "--pod-infra-container-image=k8s.gcr.io/pause:3.2",
            ]
        );
        let w = &c.argv[4];
        assert_eq!(
            w.variable,
            var(
                "KUBELET_KUBEADM_ARGS",
                &Origin {
                    file: "/var/lib/kubelet/kubeadm-flags.env".into(),
                    line: 1
                }
            )
        );
        assert_eq!(c.argv[0].origin.line, 7);
        assert!(c
            .notes
            .iter()
            .any(|n| n.contains("$KUBELET_EXTRA_ARGS is not set")));
        assert!(c.notes.iter().any(|n| n.contains("/etc/default/kubelet")));
        assert_eq!(u.wants, ["network-online.target"]);
    }

    #[test]
    fn flags_on_the_units_own_exec_start_with_continuations_and_dependencies() {
        // As the EKS AMI's Docker-era unit: flags on ExecStart=, continued lines, ${VAR}.
        let unit = "[Unit]\nAfter=docker.service iptables-restore.service\nRequires=docker.service\n\n[Service]\nEnvironment='KUBELET_NODE_IP=10.0.0.7'\nExecStart=/usr/bin/kubelet --cloud-provider aws \\\n    --config /etc/kubernetes/kubelet/kubelet-config.json \\\n    --node-ip=${KUBELET_NODE_IP} \\\n    --container-runtime docker \\\n    --network-plugin cni $KUBELET_ARGS $KUBELET_EXTRA_ARGS\n";
        let (_d, n, u) = loaded(&[
            ("/etc/systemd/system/kubelet.service", unit),
            (
                "/etc/systemd/system/kubelet.service.d/10-kubelet-args.conf",
                "[Service]\nEnvironment='KUBELET_ARGS=--node-ip=10.0.0.7 --pod-infra-container-image=602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.1-eksbuild.1 --v=2'\n",
            ),
        ]);
        assert_eq!(u.requires, ["docker.service"]);
        assert_eq!(u.after, ["docker.service", "iptables-restore.service"]);
        let c = u.command(&n).unwrap().unwrap();
        assert_eq!(
            c.args(),
            [
                "/usr/bin/kubelet",
                "--cloud-provider",
                "aws",
                "--config",
                "/etc/kubernetes/kubelet/kubelet-config.json",
                "--node-ip=10.0.0.7",
                "--container-runtime",
                "docker",
                "--network-plugin",
                "cni",
                "--node-ip=10.0.0.7",
                "--pod-infra-container-image=602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.1-eksbuild.1",
                "--v=2",
            ]
        );
        // ${VAR} inside a word: one word, the variable said; the line is the ExecStart='s first.
        assert_eq!(c.argv[5].variable.as_ref().unwrap().name, "KUBELET_NODE_IP");
        // Each word on the line it stands on: the continued ExecStart= began on line 7.
        assert_eq!(c.argv[0].origin.line, 7);
        assert_eq!(c.argv[3].origin.line, 8, "--config");
        assert_eq!(c.argv[5].origin.line, 9, "--node-ip=${{KUBELET_NODE_IP}}");
        assert_eq!(c.argv[9].origin.line, 11, "cni");
        assert_eq!(
            c.argv[12].variable.as_ref().unwrap().set_at.file,
            "/etc/systemd/system/kubelet.service.d/10-kubelet-args.conf"
        );
    }

    #[test]
    fn kubespray_env_file_expanded_as_a_variable() {
        // Kubespray's kubelet.service (EnvironmentFile=/etc/kubernetes/kubelet.env, ExecStart
        // expanding its variables) as its 2.17 fixture node has it.
        let n = Node::new(format!(
            "{}/tests/fixtures/nodes/kubespray-2.17-docker/node",
            env!("CARGO_MANIFEST_DIR")
        ));
        let u = Unit::load(&n, "kubelet.service").unwrap().unwrap();
        assert_eq!(u.wants, ["docker.socket"]);
        let c = u.command(&n).unwrap().unwrap();
        let args = c.args();
        assert_eq!(args[0], "/usr/local/bin/kubelet");
        assert!(args.contains(&"--hostname-override=node1"), "{args:?}");
        assert!(args.contains(&"--network-plugin=cni"), "{args:?}");
        assert!(args.contains(&"--cni-bin-dir=/opt/cni/bin"), "{args:?}");
        // A value continued over lines (backslash-newline) is one value.
        for f in [
            "--config=/etc/kubernetes/kubelet-config.yaml",
            "--pod-infra-container-image=k8s.gcr.io/pause:3.3",
        ] {
            assert!(args.contains(&f), "{f} in {args:?}");
        }
        let cfg = c
            .argv
            .iter()
            .find(|w| w.text.starts_with("--config="))
            .unwrap();
        assert_eq!(
            cfg.variable,
            var(
                "KUBELET_ARGS",
                &Origin {
                    file: "/etc/kubernetes/kubelet.env".into(),
                    line: 6
                }
            )
        );
        let w = c
            .argv
            .iter()
            .find(|w| w.text == "--network-plugin=cni")
            .unwrap();
        assert_eq!(w.variable.as_ref().unwrap().name, "KUBELET_NETWORK_PLUGIN");
        assert_eq!(w.origin.file, "/etc/kubernetes/kubelet.env");
    }

    #[test]
    fn dropins_by_name_across_directories_resets_prefixes_and_specifiers() {
        let (_d, n, u) = loaded(&[
            (
                "/usr/lib/systemd/system/x.service",
                "[Service]\nEnvironment=A=vendor\nExecStart=/bin/x $A\n",
            ),
            // The same drop-in name in /etc replaces /usr/lib's; 20- applies after 10-.
            (
                "/usr/lib/systemd/system/x.service.d/10-a.conf",
                "[Service]\nEnvironment=A=usr\n",
            ),
            (
                "/etc/systemd/system/x.service.d/10-a.conf",
                "[Service]\nEnvironment=A=etc\n",
            ),
            (
                "/run/systemd/system/x.service.d/20-b.conf",
                "[Service]\nExecStart=\nExecStart=-:/bin/x $A %i %b ${A}\n",
            ),
            (
                "/etc/systemd/system/service.d/05-all.conf",
                "[Service]\nEnvironment=B=all\n",
            ),
        ]);
        assert_eq!(
            u.dropins,
            [
                "/etc/systemd/system/service.d/05-all.conf",
                "/etc/systemd/system/x.service.d/10-a.conf",
                "/run/systemd/system/x.service.d/20-b.conf"
            ]
        );
        let c = u.command(&n).unwrap().unwrap();
        // `:` turned variables off, not specifiers: %i is the (empty) instance; the boot ID
        // cannot be known, and is said.
        assert_eq!(c.args(), ["/bin/x", "$A", "", "%b", "${A}"]);
        assert!(c.notes.iter().any(|n| n.contains("specifier")));
        let (env, _) = u.env(&n).unwrap();
        let a = env.iter().find(|(k, _)| k == "A").unwrap();
        assert_eq!(a.1.value, "etc");
        // EnvironmentFile= overrides Environment=; a later file a former one.
        // A backslash on the file's last line: the command stands as it is.
        let (_d3, n3, u) = loaded(&[(
            "/etc/systemd/system/z.service",
            "[Service]\nExecStart=/bin/z a \\\n  b \\\n",
        )]);
        assert_eq!(
            u.command(&n3).unwrap().unwrap().args(),
            ["/bin/z", "a", "b"]
        );
        let (_d2, n2, u) = loaded(&[
            ("/etc/systemd/system/y.service", "[Service]\nEnvironment=V=env\nEnvironmentFile=/etc/y1\nEnvironmentFile=-/etc/y2\nExecStart=/bin/y ${V}x $$V\n"),
            ("/etc/y1", "V=one\n"),
            ("/etc/y2", "V=\"two words\"\n"),
        ]);
        let c = u.command(&n2).unwrap().unwrap();
        assert_eq!(c.args(), ["/bin/y", "two wordsx", "$V"]);
        assert!(Unit::load(&n2, "nope.service").unwrap().is_none());
    }

    #[test]
    fn exec_start_is_replaced_where_it_stands_and_stays_continued() {
        let text = "[Service]\nExecStartPre=/bin/true\nExecStart=/usr/bin/kubelet --a=b \\\n    --c d \\\n    $X\nRestart=always\n";
        assert_eq!(
            exec_start_value(text, 3).unwrap(),
            "/usr/bin/kubelet --a=b --c d $X"
        );
        let out = replace_exec_start(text, 3, "/usr/bin/kubelet --a=b $X --e=f").unwrap();
        assert_eq!(
            out,
            "[Service]\nExecStartPre=/bin/true\nExecStart=/usr/bin/kubelet \\\n    --a=b \\\n    $X \\\n    --e=f\nRestart=always\n"
        );
        assert_eq!(
            exec_start_value(&out, 3).unwrap(),
            "/usr/bin/kubelet --a=b $X --e=f"
        );
        // A one-line ExecStart= stays on one line; a line that is not one is refused.
        let one = "[Service]\nExecStart=/k --a\n";
        assert_eq!(
            replace_exec_start(one, 2, "/k --b").unwrap(),
            "[Service]\nExecStart=/k --b\n"
        );
        assert!(replace_exec_start(one, 1, "/k").is_err());
    }

    #[test]
    fn dependencies_on_docker_follow_the_runtime() {
        let text = "[Unit]\nAfter=network-online.target docker.service\nRequires=docker.service\nWants=docker.socket containerd.service\nPartOf=docker.service\n\n[Service]\nAfter=docker.service\n";
        let (out, said) =
            replace_dependencies(text, &crate::runtime::DOCKER_UNITS, "containerd.service");
        assert_eq!(
            out,
            "[Unit]\nAfter=network-online.target containerd.service\nRequires=containerd.service\nWants=containerd.service\n\n[Service]\nAfter=docker.service\n"
        );
        assert_eq!(said.len(), 4, "{said:?}");
        assert!(said[3].contains("PartOf=docker.service dropped"));
        let (same, none) = replace_dependencies(
            "[Unit]\nAfter=network.target\n",
            &["docker.service"],
            "x.service",
        );
        assert_eq!(same, "[Unit]\nAfter=network.target\n");
        assert!(none.is_empty());
    }
}
