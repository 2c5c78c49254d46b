//! Edit top-level keys of a YAML file line by line, so that comments and everything else stay as
//! they are (kubelet config.yaml, crictl.yaml). The result is parsed again to prove the edit.

/// A plain YAML scalar when safe, else a double-quoted (JSON) string.
fn scalar(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:-@".contains(c))
        && !value.starts_with(['-', ':', '@'])
        && !matches!(
            value,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off"
        );
    if plain {
        value.to_string()
    } else {
        serde_json::to_string(value).unwrap()
    }
}

fn key_of(line: &str) -> Option<&str> {
    if line.starts_with([' ', '\t', '#', '-']) {
        return None;
    }
    line.split_once(':')
        .map(|(k, _)| k.trim().trim_matches(['"', '\'']))
}

/// Set `key: N` (an integer) at the top level, as [`set_top_level`] sets a string.
pub fn set_top_level_int(text: &str, key: &str, value: u64) -> Result<String, String> {
    let is = |t: &str| {
        serde_norway::from_str::<serde_norway::Value>(t.trim_start_matches('\u{feff}'))
            .ok()
            .and_then(|v| v.get(key).and_then(|x| x.as_u64()))
            == Some(value)
    };
    if is(text) {
        return Ok(text.to_string());
    }
    let out = set_line(text, key, &format!("{key}: {value}"));
    if !is(&out) {
        return Err(format!(
            "could not set `{key}` at the top level of the file"
        ));
    }
    Ok(out)
}

/// Set `key: value` at the top level: replace the line that sets it, else append.
pub fn set_top_level(text: &str, key: &str, value: &str) -> Result<String, String> {
    if check(text, key, Some(value)).is_ok() {
        return Ok(text.to_string());
    }
    let out = set_line(text, key, &format!("{key}: {}", scalar(value)));
    check(&out, key, Some(value))?;
    Ok(out)
}

/// The text with the top-level line of `key` replaced by `line`, else `line` appended.
fn set_line(text: &str, key: &str, line: &str) -> String {
    let mut out = String::with_capacity(text.len() + line.len() + 1);
    let mut found = false;
    for l in text.split_inclusive('\n') {
        if !found && key_of(l) == Some(key) {
            found = true;
            out.push_str(line);
            out.push('\n');
        } else {
            out.push_str(l);
        }
    }
    if !found {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn check(text: &str, key: &str, want: Option<&str>) -> Result<(), String> {
    // A byte order mark is not a document of its own (the kubelet's reader skips it too).
    let v: serde_norway::Value = serde_norway::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| format!("the edited file is not valid YAML ({e})"))?;
    let got = v.get(key).and_then(|v| v.as_str());
    if got != want {
        return Err(format!("could not set `{key}` at the top level of the file (is it a flow-style or multi-document YAML file?)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_or_appends_and_keeps_the_rest() {
        let text = "apiVersion: kubelet.config.k8s.io/v1beta1\n# comment\ncgroupDriver: systemd\ncontainerRuntimeEndpoint: unix:///run/cri-dockerd.sock\n";
        let out = set_top_level(
            text,
            "containerRuntimeEndpoint",
            "unix:///run/containerd/containerd.sock",
        )
        .unwrap();
        assert_eq!(
            out,
            text.replace("cri-dockerd.sock", "containerd/containerd.sock")
        );
        let out = set_top_level(
            "kind: KubeletConfiguration",
            "containerRuntimeEndpoint",
            "unix:///x.sock",
        )
        .unwrap();
        assert_eq!(
            out,
            "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///x.sock\n"
        );
        assert_eq!(scalar("has space"), "\"has space\"");
        let quoted = "a: \"unix:///x.sock\"\n";
        assert_eq!(
            set_top_level(quoted, "a", "unix:///x.sock").unwrap(),
            quoted,
            "an equal value is left as written"
        );
    }
}
