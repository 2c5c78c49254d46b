//! The kubelet's flags and config.yaml for its version (runtime-facts §4).

use crate::flags::{FileKind, FlagList, VarsFile};
use crate::version::Version;

/// Flags that only dockershim took; the kubelet refuses them from 1.24.
pub const DOCKERSHIM_FLAGS: [&str; 10] = [
    "network-plugin",
    "cni-bin-dir",
    "cni-conf-dir",
    "cni-cache-dir",
    "network-plugin-mtu",
    "docker-endpoint",
    "image-pull-progress-deadline",
    "experimental-dockershim-root-directory",
    "experimental-dockershim",
    "non-masquerade-cidr",
];

/// Flags naming the runtime: removed everywhere, then set once where they belong.
const RUNTIME_FLAGS: [&str; 3] = [
    "container-runtime",
    "container-runtime-endpoint",
    "image-service-endpoint",
];

/// How the kubelet of a given version is told its runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub endpoint: String,
    /// `--container-runtime=remote` (below 1.27; removed in 1.27).
    pub runtime_remote_flag: bool,
    /// The endpoint goes to config.yaml (`containerRuntimeEndpoint`, 1.27+) rather than a flag.
    pub endpoint_in_config: bool,
    /// `--pod-infra-container-image` is gone (1.35+).
    pub drop_pod_infra: bool,
    /// The pause image the runtime is given, where the kubelet's `--pod-infra-container-image`
    /// (kept below 1.35, for image garbage collection) must name the same.
    pub pause: Option<String>,
    /// Flags set with the runtime flags (Docker's log rotation where the kubelet has no config
    /// file).
    pub extra_flags: Vec<(String, String)>,
}

impl Rules {
    pub fn for_version(v: Version, endpoint: &str, has_config_file: bool) -> Rules {
        Rules {
            endpoint: endpoint.to_string(),
            runtime_remote_flag: !v.at_least(1, 27),
            endpoint_in_config: v.at_least(1, 27) && has_config_file,
            drop_pod_infra: v.at_least(1, 35),
            pause: None,
            extra_flags: vec![],
        }
    }
}

/// Rewrite one flags file: the variables `vars` (those the kubelet's command line expands).
/// `owner` names the variable that receives the runtime flags, when this file is where they
/// belong. Returns the new text and the flags removed.
pub fn rewrite_flags_file(
    kind: FileKind,
    text: &str,
    vars: &[String],
    owner: Option<&str>,
    rules: &Rules,
) -> Result<(String, Vec<String>), String> {
    let mut file = VarsFile::parse(kind, text)?;
    // A unit file's lines (`Environment=`) read `%` as a specifier; an env file's do not.
    let in_unit = kind != FileKind::EnvFile;
    let mut removed = Vec::new();
    let mut error = None;
    let present: Vec<String> = file.vars().into_iter().map(|(k, _)| k).collect();
    for var in vars.iter().filter(|v| present.contains(v)) {
        file.edit(var, &mut |value| {
            let mut list = match FlagList::parse(value) {
                Ok(l) => l,
                Err(e) => {
                    error = Some(format!("{var}: {e}"));
                    return value.to_string();
                }
            };
            edit_list(
                &mut list,
                owner == Some(var.as_str()),
                in_unit,
                rules,
                &mut removed,
            );
            list.render()
        });
    }
    if let Some(e) = error {
        return Err(e);
    }
    if let Some(owner) = owner {
        if !present.iter().any(|v| v == owner) {
            let mut list = FlagList::parse("").unwrap();
            add_runtime_flags(&mut list, in_unit, rules);
            if !list.render().is_empty() {
                file.append(owner, &list.render());
            }
        }
    }
    Ok((file.render(), removed))
}

/// Rewrite the flags written on an `ExecStart=` line itself (the one starting on `line`).
pub fn rewrite_exec_start(
    text: &str,
    line: usize,
    owner: bool,
    rules: &Rules,
) -> Result<(String, Vec<String>), String> {
    let value = crate::unit::exec_start_value(text, line)?;
    let mut list = FlagList::parse(&value).map_err(|e| format!("ExecStart= (line {line}): {e}"))?;
    let mut removed = Vec::new();
    edit_list(&mut list, owner, true, rules, &mut removed);
    let new = list.render();
    if new == value {
        return Ok((text.to_string(), removed));
    }
    Ok((crate::unit::replace_exec_start(text, line, &new)?, removed))
}

/// A value as written into a unit file (`in_unit`: an `ExecStart=` or `Environment=` line),
/// where systemd reads `%` as a specifier when it loads the line: `%%` stands for `%`. An env
/// file's values are taken as they are.
fn unit_text(value: &str, in_unit: bool) -> String {
    if in_unit {
        value.replace('%', "%%")
    } else {
        value.to_string()
    }
}

/// One list of flags for the kubelet's version: dockershim's flags and the runtime's go; the
/// runtime flags are set again where they belong (`owner`). The words it adds are written for
/// the file they go to (`unit_text`); the words it keeps are left as written.
fn edit_list(
    list: &mut FlagList,
    owner: bool,
    in_unit: bool,
    rules: &Rules,
    removed: &mut Vec<String>,
) {
    for flag in DOCKERSHIM_FLAGS.iter().chain(&RUNTIME_FLAGS) {
        if list.remove(flag) && !RUNTIME_FLAGS.contains(flag) {
            removed.push(format!("--{flag}"));
        }
    }
    if rules.drop_pod_infra && list.remove("pod-infra-container-image") {
        removed.push("--pod-infra-container-image".into());
    }
    // The kubelet keeps from garbage collection the image it names: the runtime's pause image
    // (cri-dockerd's, where the pods ran with that one).
    if let (Some(pause), false) = (&rules.pause, rules.drop_pod_infra) {
        if list
            .flags()
            .iter()
            .any(|f| f.name == "pod-infra-container-image")
        {
            list.set("pod-infra-container-image", &unit_text(pause, in_unit));
        }
    }
    if owner {
        // The flags this list gets go last (a later flag wins over one in a variable before
        // it), each time in the same order: a second plan of a migrated node finds every word
        // where the first put it.
        for (name, _) in &rules.extra_flags {
            list.remove(name);
        }
        add_runtime_flags(list, in_unit, rules);
    }
}

/// The carried flags first, the runtime's last: a migrated node's next plan, which carries
/// nothing more, re-adds only the runtime's, in the same place.
fn add_runtime_flags(list: &mut FlagList, in_unit: bool, rules: &Rules) {
    for (name, value) in &rules.extra_flags {
        list.set(name, &unit_text(value, in_unit));
    }
    if rules.runtime_remote_flag {
        list.set("container-runtime", "remote");
    }
    if !rules.endpoint_in_config {
        list.set(
            "container-runtime-endpoint",
            &unit_text(&rules.endpoint, in_unit),
        );
    }
}

/// config.yaml: from 1.27 the endpoint is a KubeletConfiguration field.
pub fn rewrite_config(text: &str, rules: &Rules) -> Result<String, String> {
    if !rules.endpoint_in_config {
        return Ok(text.to_string());
    }
    // A JSON config (the EKS AMI's kubelet-config.json) stays JSON.
    if is_json(text) {
        let mut out = set_json_top_level(text, "containerRuntimeEndpoint", &rules.endpoint)?;
        let v: serde_json::Value =
            serde_json::from_str(out.trim_start_matches('\u{feff}')).map_err(|e| e.to_string())?;
        if v.get("imageServiceEndpoint").is_some() {
            out = set_json_top_level(&out, "imageServiceEndpoint", &rules.endpoint)?;
        }
        return Ok(out);
    }
    let mut out = super::yaml::set_top_level(text, "containerRuntimeEndpoint", &rules.endpoint)?;
    let v: serde_norway::Value =
        serde_norway::from_str(out.trim_start_matches('\u{feff}')).map_err(|e| e.to_string())?;
    if v.get("imageServiceEndpoint").is_some() {
        out = super::yaml::set_top_level(&out, "imageServiceEndpoint", &rules.endpoint)?;
    }
    Ok(out)
}

/// A KubeletConfiguration written as JSON (an object), not YAML.
pub fn is_json(text: &str) -> bool {
    text.trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('{')
}

/// Set a top-level string key of a JSON object in its text: the value replaced where the key
/// is, else the key added last, indented as the keys before it; the rest byte for byte.
pub fn set_json_top_level(text: &str, key: &str, value: &str) -> Result<String, String> {
    set_json_value(text, key, &serde_json::Value::from(value))
}

/// [`set_json_top_level`] for any JSON value (a number, for `containerLogMaxFiles`).
pub fn set_json_value(text: &str, key: &str, value: &serde_json::Value) -> Result<String, String> {
    let doc: serde_json::Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| format!("not valid JSON ({e})"))?;
    let obj = doc.as_object().ok_or("not a JSON object")?;
    let quoted = value.to_string();
    // Walk the text: depth and strings tracked; at depth 1 a string followed by `:` is a key.
    let b = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    let mut last_value_end = None;
    let mut close = None;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                let end = i + 1;
                if depth == 1 {
                    let rest = text[end..].trim_start();
                    if rest.starts_with(':')
                        && serde_json::from_str::<String>(&text[start..end])
                            .ok()
                            .as_deref()
                            == Some(key)
                    {
                        // The value: from after the colon to its end (a string here, as set).
                        let colon = end + (text[end..].len() - rest.len());
                        let vstart = colon
                            + 1
                            + (text[colon + 1..].len() - text[colon + 1..].trim_start().len());
                        let mut de = serde_json::Deserializer::from_str(&text[vstart..])
                            .into_iter::<serde_json::Value>();
                        de.next();
                        let vend = vstart + de.byte_offset();
                        return Ok(format!("{}{quoted}{}", &text[..vstart], &text[vend..]));
                    }
                }
                i = end;
                if depth == 1 {
                    last_value_end = Some(i);
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
                if depth == 1 {
                    last_value_end = Some(i + 1);
                }
            }
            c if depth == 1 && !c.is_ascii_whitespace() && c != b',' && c != b':' => {
                last_value_end = Some(i + 1);
            }
            _ => {}
        }
        i += 1;
    }
    let close = close.ok_or("the object does not close")?;
    // The indentation of the first key, else two spaces.
    let first_key = text[..close].find('"').unwrap_or(close);
    let line_start = text[..first_key].rfind('\n').map(|n| n + 1).unwrap_or(0);
    let indent = &text[line_start..first_key];
    let indent = if indent.trim().is_empty() && !indent.is_empty() {
        indent
    } else {
        "  "
    };
    let out = match (obj.is_empty(), last_value_end) {
        (false, Some(end)) => format!(
            "{},\n{indent}\"{key}\": {quoted}{}",
            &text[..end],
            &text[end..]
        ),
        _ => format!(
            "{}\n{indent}\"{key}\": {quoted}\n{}",
            &text[..close],
            &text[close..]
        ),
    };
    serde_json::from_str::<serde_json::Value>(out.trim_start_matches('\u{feff}'))
        .map_err(|e| format!("the edited JSON does not read back ({e})"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: &str = "unix:///run/containerd/containerd.sock";

    fn kubeadm() -> Vec<String> {
        vec!["KUBELET_KUBEADM_ARGS".to_string()]
    }

    /// kubeadm's flags file rewritten by the rules: its text, and the flags taken out.
    fn kubeadm_flags(text: &str, rules: &Rules) -> (String, Vec<String>) {
        rewrite_flags_file(
            FileKind::EnvFile,
            text,
            &kubeadm(),
            Some("KUBELET_KUBEADM_ARGS"),
            rules,
        )
        .unwrap()
    }

    /// kubeadm's flags by the kubelet's version: 1.23 gets `--container-runtime=remote` and the
    /// endpoint, its network plugin gone; 1.27 with a config file takes no runtime flag (the
    /// endpoint is the config's), without one still the deprecated flag; 1.35 no pause flag.
    #[test]
    fn kubeadm_flags_follow_the_kubelets_version() {
        let dockershim = "KUBELET_KUBEADM_ARGS=\"--network-plugin=cni --pod-infra-container-image=k8s.gcr.io/pause:3.6\"\n";
        let cri_dockerd = "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/cri-dockerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.9\"\n";
        let args = |flags: &str| format!("KUBELET_KUBEADM_ARGS=\"{flags}\"\n");
        let cases = [
            (dockershim, (23, 17), true, args(&format!("--pod-infra-container-image=k8s.gcr.io/pause:3.6 --container-runtime=remote --container-runtime-endpoint={EP}")), &["--network-plugin"][..]),
            (cri_dockerd, (27, 0), true, args("--pod-infra-container-image=registry.k8s.io/pause:3.9"), &[]),
            (cri_dockerd, (35, 0), true, args(""), &["--pod-infra-container-image"]),
            ("", (27, 0), false, args(&format!("--container-runtime-endpoint={EP}")), &[]),
        ];
        for (text, (minor, patch), config, want, removed) in cases {
            let rules = Rules::for_version(Version::new(1, minor, patch), EP, config);
            let (out, gone) = kubeadm_flags(text, &rules);
            assert_eq!(out, want, "1.{minor}: {text}");
            assert_eq!(gone, removed, "1.{minor}: {text}");
        }
    }

    /// systemd reads `%` in a unit's lines as a specifier: a new word with one, written into an
    /// `ExecStart=` or `Environment=` line, is doubled; the words already there stay as written;
    /// an env file takes it as it is.
    #[test]
    fn a_percent_in_a_new_word_is_doubled_in_a_unit_file_only() {
        let ep = "unix:///run/odd%dir/containerd.sock";
        let rules = Rules::for_version(Version::new(1, 23, 17), ep, true);
        let unit = "[Service]\nExecStart=/usr/bin/kubelet --eviction-hard=nodefs.available<10%% --network-plugin=cni\n";
        let (out, _) = rewrite_exec_start(unit, 2, true, &rules).unwrap();
        assert_eq!(
            out,
            "[Service]\nExecStart=/usr/bin/kubelet --eviction-hard=nodefs.available<10%% --container-runtime=remote --container-runtime-endpoint=unix:///run/odd%%dir/containerd.sock\n"
        );
        let drop_in = "[Service]\nEnvironment=\"ARGS=--network-plugin=cni\"\n";
        let vars = vec!["ARGS".to_string()];
        let (out, _) =
            rewrite_flags_file(FileKind::DropIn, drop_in, &vars, Some("ARGS"), &rules).unwrap();
        assert!(out.contains("odd%%dir"), "{out}");
        let env = "ARGS=\"--network-plugin=cni\"\n";
        let (out, _) =
            rewrite_flags_file(FileKind::EnvFile, env, &vars, Some("ARGS"), &rules).unwrap();
        assert!(out.contains("odd%dir") && !out.contains("%%"), "{out}");
    }

    #[test]
    fn config_yaml_gets_the_endpoint_from_1_27() {
        let rules = Rules::for_version(Version::new(1, 28, 0), EP, true);
        let out = rewrite_config(
            "kind: KubeletConfiguration\ncgroupDriver: systemd\n",
            &rules,
        )
        .unwrap();
        assert_eq!(out, format!("kind: KubeletConfiguration\ncgroupDriver: systemd\ncontainerRuntimeEndpoint: {EP}\n"));
        let old = Rules::for_version(Version::new(1, 26, 0), EP, true);
        assert_eq!(
            rewrite_config("kind: KubeletConfiguration\n", &old).unwrap(),
            "kind: KubeletConfiguration\n"
        );
    }

    #[test]
    fn flags_on_the_exec_start_line_are_edited_in_place() {
        let unit = "[Service]\nExecStart=/usr/bin/kubelet --config /c.json \\\n    --container-runtime docker \\\n    --network-plugin cni $KUBELET_ARGS\n";
        let rules = Rules::for_version(Version::new(1, 22, 17), EP, true);
        let (out, removed) = rewrite_exec_start(unit, 2, true, &rules).unwrap();
        assert_eq!(removed, ["--network-plugin"]);
        assert_eq!(
            crate::unit::exec_start_value(&out, 2).unwrap(),
            format!("/usr/bin/kubelet --config /c.json $KUBELET_ARGS --container-runtime=remote --container-runtime-endpoint={EP}")
        );
        // Not the owner: only what goes is removed; nothing to remove leaves the text as it is.
        let (out, _) = rewrite_exec_start(unit, 2, false, &rules).unwrap();
        assert!(!out.contains("--container-runtime"), "{out}");
        let plain = "[Service]\nExecStart=/usr/bin/kubelet $KUBELET_ARGS\n";
        assert_eq!(
            rewrite_exec_start(plain, 2, false, &rules).unwrap().0,
            plain
        );
    }

    #[test]
    fn a_json_config_gets_the_endpoint_and_stays_json() {
        let rules = Rules::for_version(Version::new(1, 28, 0), EP, true);
        let text = "{\n  \"kind\": \"KubeletConfiguration\",\n  \"clusterDNS\": [\"10.100.0.10\"],\n  \"evictionHard\": {\"memory.available\": \"100Mi\"}\n}\n";
        let out = rewrite_config(text, &rules).unwrap();
        assert_eq!(
            out,
            format!("{{\n  \"kind\": \"KubeletConfiguration\",\n  \"clusterDNS\": [\"10.100.0.10\"],\n  \"evictionHard\": {{\"memory.available\": \"100Mi\"}},\n  \"containerRuntimeEndpoint\": \"{EP}\"\n}}\n")
        );
        // Set again: replaced in place, nothing else moves.
        let again = out.replace(EP, "unix:///run/cri-dockerd.sock");
        assert_eq!(rewrite_config(&again, &rules).unwrap(), out);
        // Nested keys of the same name are not the top-level one; an empty object gets it.
        let nested = "{\"x\": {\"containerRuntimeEndpoint\": \"a\"}}";
        let v: serde_json::Value = serde_json::from_str(
            &set_json_top_level(nested, "containerRuntimeEndpoint", "b").unwrap(),
        )
        .unwrap();
        assert_eq!(
            (
                v["x"]["containerRuntimeEndpoint"].as_str(),
                v["containerRuntimeEndpoint"].as_str()
            ),
            (Some("a"), Some("b"))
        );
        let v: serde_json::Value =
            serde_json::from_str(&set_json_top_level("{}", "k", "v").unwrap()).unwrap();
        assert_eq!(v["k"], "v");
        assert!(set_json_top_level("[1]", "k", "v").is_err());
    }
}
