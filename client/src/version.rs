//! Output of `remote-gopls version`, shaped like `gopls version` so editors read it the same way.
//!
//! The output is built from constants only, so `version` returns instantly and never touches
//! the network. vscode-go runs `<binary> version -json` before it starts the language server
//! and waits for it without a timeout.
//!
//! # Reported version
//!
//! vscode-go (golang/vscode-go master 28e27ffd, `extension/src/language/goLanguageServer.ts`)
//! reads only `Main.Version` and `GoVersion` from `version -json` (`getLocalGoplsVersion`).
//! `Main.Version` is reported as [`PINNED_GOPLS_VERSION`] followed by `+dirty`, because:
//!
//! * `passInlayHintConfigToGopls`, `passVulncheckConfigToGopls` and
//!   `passLinkifyShowMessageToGopls` send their settings only when `semver.parse` of the
//!   version compares above 0.8.4, 0.10.1 and 0.13.99. semver keeps `v0.23.0+dirty` as
//!   0.23.0 (build metadata is ignored), so all three settings are sent.
//! * `shouldUpdateLanguageServer` returns early for `(devel)` and for any version ending in
//!   `+dirty`, so neither the update prompt nor the automatic `go install` of real gopls
//!   starts. A plain `v0.23.0` would be compared with the newest gopls release, daily when
//!   the binary is named `gopls` and after a crash whatever its name, and prompt as soon as
//!   a newer release exists.
//! * Unlike `(devel)`, the value still names the gopls release the client is paired with.
//!
//! `Main.Path` is gopls's module path because `Main` describes the server the editor talks
//! to. The top-level `Path` and `Version` name this client and its Cargo version, so plain
//! `version` prints `<client path> <client version>` and does not claim to be gopls.

use std::io::Write;

use serde::Serialize;

use crate::buildinfo;

/// gopls release that this client is paired with, reported in `Main.Version` and in the
/// `remote-gopls.gopls` build setting.
pub const PINNED_GOPLS_VERSION: &str = remote_gopls_proto::PINNED_GOPLS_VERSION;

/// Suffix that vscode-go's `shouldUpdateLanguageServer` treats as a developer build.
pub const DEVELOPER_VERSION_SUFFIX: &str = "+dirty";

/// Module path of gopls, reported as `Main.Path`.
pub const GOPLS_MODULE_PATH: &str = "golang.org/x/tools/gopls";

/// Go-style module path of this project: the workspace `repository` URL without its scheme.
pub const CLIENT_MODULE_PATH: &str = "github.com/remote-gopls/remote-gopls";

/// Go-style path of this binary, reported as the top-level `Path`.
pub const CLIENT_PATH: &str = "github.com/remote-gopls/remote-gopls/client";

/// Version of this client in Go's `v`-prefixed form.
pub const CLIENT_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// Build-setting key that carries the client version (without the `v`).
pub const CLIENT_VERSION_SETTING: &str = "remote-gopls.version";

/// Build-setting key that carries [`PINNED_GOPLS_VERSION`].
pub const PINNED_GOPLS_SETTING: &str = "remote-gopls.gopls";

/// Errors from writing version output.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("failed to write version output: {0}")]
    Write(#[from] std::io::Error),

    #[error("failed to encode version output as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Module entry in the shape of Go's `runtime/debug.Module`.
///
/// Empty fields are left out as Go's `omitempty` tags do. gopls v0.23.0 built with go1.26.8
/// prints the same shape, with no `"Replace": null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Module {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub path: &'static str,

    #[serde(skip_serializing_if = "str::is_empty")]
    pub version: String,

    #[serde(skip_serializing_if = "str::is_empty")]
    pub sum: &'static str,

    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace: Option<Box<Module>>,
}

/// Key-value pair in the shape of Go's `runtime/debug.BuildSetting`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BuildSetting {
    pub key: &'static str,

    #[serde(skip_serializing_if = "str::is_empty")]
    pub value: &'static str,
}

/// Version report in the shape of gopls's `ServerVersion`: Go's `runtime/debug.BuildInfo`
/// followed by a `Version` field. Field order is the JSON key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionInfo {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub go_version: &'static str,

    #[serde(skip_serializing_if = "str::is_empty")]
    pub path: &'static str,

    pub main: Module,

    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<Module>,

    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<BuildSetting>,

    pub version: &'static str,
}

/// Returns the gopls version written to `Main.Version`, for example `v0.23.0+dirty`.
pub fn reported_gopls_version() -> String {
    format!("{PINNED_GOPLS_VERSION}{DEVELOPER_VERSION_SUFFIX}")
}

/// Builds the version report of this binary.
pub fn version_info() -> VersionInfo {
    VersionInfo {
        go_version: buildinfo::GO_VERSION,
        path: CLIENT_PATH,
        main: Module {
            path: GOPLS_MODULE_PATH,
            version: reported_gopls_version(),
            sum: "",
            replace: None,
        },
        deps: vec![Module {
            path: CLIENT_MODULE_PATH,
            version: CLIENT_VERSION.to_string(),
            sum: "",
            replace: None,
        }],
        settings: vec![
            BuildSetting {
                key: "GOOS",
                value: buildinfo::GOOS,
            },
            BuildSetting {
                key: "GOARCH",
                value: buildinfo::GOARCH,
            },
            BuildSetting {
                key: CLIENT_VERSION_SETTING,
                value: env!("CARGO_PKG_VERSION"),
            },
            BuildSetting {
                key: PINNED_GOPLS_SETTING,
                value: PINNED_GOPLS_VERSION,
            },
        ],
        version: CLIENT_VERSION,
    }
}

/// Writes the output of `version`: JSON for `-json`, the `Build info` block for the global
/// `-v` flag, else one `<path> <version>` line.
///
/// `-json` wins over `-v`, as in gopls.
pub fn write_version(out: &mut impl Write, json: bool, verbose: bool) -> Result<(), VersionError> {
    let info = version_info();

    if json {
        out.write_all(&render_json(&info)?)?;
    } else if verbose {
        out.write_all(render_verbose(&info).as_bytes())?;
    } else {
        writeln!(out, "{} {}", info.path, info.version)?;
    }

    out.flush()?;
    Ok(())
}

/// Encodes `info` like Go's `json.MarshalIndent(info, "", "\t")`, without a trailing newline.
pub fn render_json(info: &VersionInfo) -> Result<Vec<u8>, serde_json::Error> {
    let mut buffer = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut serializer = serde_json::Serializer::with_formatter(&mut buffer, formatter);
    info.serialize(&mut serializer)?;
    Ok(buffer)
}

/// Formats the verbose block that `gopls -v version` prints.
pub fn render_verbose(info: &VersionInfo) -> String {
    const TITLE: &str = "Build info";

    let mut text = format!("{TITLE}\n{}\n", "-".repeat(TITLE.len()));
    text.push_str(&format!("{} {}\n", info.path, info.version));

    for module in std::iter::once(&info.main).chain(&info.deps) {
        text.push_str(&format!("    {}@{}", module.path, module.version));
        if !module.sum.is_empty() {
            text.push_str(&format!(" {}", module.sum));
        }
        if let Some(replace) = &module.replace {
            text.push_str(&format!(" => {}", replace.path));
        }
        text.push('\n');
    }

    text.push_str(&format!("go: {}\n", info.go_version));
    text
}

/// Formats the module-information text that Go's `BuildInfo.String` produces, without the
/// leading `go` line: `path`, `mod`, `dep` and `build` lines, each ending in a newline.
///
/// `go version -m` prints these lines, and `buildinfo` embeds the same text in the binary.
pub fn render_modinfo(info: &VersionInfo) -> String {
    fn push_module(text: &mut String, word: &str, module: &Module) {
        text.push_str(&format!("{word}\t{}\t{}", module.path, module.version));
        match &module.replace {
            Some(replace) => {
                text.push('\n');
                push_module(text, "=>", replace);
            }
            None => {
                text.push('\t');
                text.push_str(module.sum);
                text.push('\n');
            }
        }
    }

    let mut text = format!("path\t{}\n", info.path);
    push_module(&mut text, "mod", &info.main);
    for dep in &info.deps {
        push_module(&mut text, "dep", dep);
    }
    for setting in &info.settings {
        text.push_str(&format!("build\t{}={}\n", setting.key, setting.value));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_follow_go_field_order() {
        let json = String::from_utf8(render_json(&version_info()).unwrap()).unwrap();

        // One tab of indentation selects top-level keys only.
        let keys = [
            "\n\t\"GoVersion\"",
            "\n\t\"Path\"",
            "\n\t\"Main\"",
            "\n\t\"Deps\"",
            "\n\t\"Settings\"",
            "\n\t\"Version\"",
        ];
        let positions: Vec<usize> = keys
            .iter()
            .map(|key| {
                json.find(key)
                    .unwrap_or_else(|| panic!("{key} missing in {json}"))
            })
            .collect();
        assert!(
            positions.windows(2).all(|pair| pair[0] < pair[1]),
            "keys out of order in {json}"
        );
    }

    #[test]
    fn json_uses_tabs_and_no_trailing_newline() {
        let json = String::from_utf8(render_json(&version_info()).unwrap()).unwrap();

        assert!(json.starts_with("{\n\t\"GoVersion\": \"go"), "{json}");
        assert!(json.contains("\n\t\"Main\": {\n\t\t\"Path\": "), "{json}");
        assert!(json.ends_with("\n}"), "{json}");
    }

    #[test]
    fn json_omits_empty_module_fields() {
        let json = String::from_utf8(render_json(&version_info()).unwrap()).unwrap();

        assert!(!json.contains("\"Sum\""), "{json}");
        assert!(!json.contains("\"Replace\""), "{json}");
    }

    #[test]
    fn main_version_suppresses_update_prompts() {
        let version = version_info().main.version;

        assert_eq!(version, "v0.23.0+dirty");
        assert!(version.starts_with(PINNED_GOPLS_VERSION));
        assert!(version.ends_with("+dirty"));
    }

    #[test]
    fn client_version_appears_in_json() {
        let json = String::from_utf8(render_json(&version_info()).unwrap()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();

        assert_eq!(value["Version"], CLIENT_VERSION);
        assert_eq!(value["Deps"][0]["Version"], CLIENT_VERSION);
        assert_eq!(value["Settings"][2]["Key"], CLIENT_VERSION_SETTING);
        assert_eq!(value["Settings"][2]["Value"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn client_module_path_matches_repository() {
        assert_eq!(
            format!("https://{CLIENT_MODULE_PATH}"),
            env!("CARGO_PKG_REPOSITORY")
        );
        assert!(CLIENT_PATH.starts_with(CLIENT_MODULE_PATH));
    }

    #[test]
    fn plain_version_is_one_line() {
        let mut out = Vec::new();
        write_version(&mut out, false, false).unwrap();
        let text = String::from_utf8(out).unwrap();

        assert_eq!(text, format!("{CLIENT_PATH} {CLIENT_VERSION}\n"));
    }

    #[test]
    fn json_flag_wins_over_verbose() {
        let mut out = Vec::new();
        write_version(&mut out, true, true).unwrap();

        assert_eq!(out, render_json(&version_info()).unwrap());
    }

    #[test]
    fn verbose_lists_modules_and_go() {
        let text = render_verbose(&version_info());
        let lines: Vec<&str> = text.lines().collect();

        assert_eq!(lines[0], "Build info");
        assert_eq!(lines[1], "----------");
        assert_eq!(lines[2], format!("{CLIENT_PATH} {CLIENT_VERSION}"));
        assert_eq!(lines[3], format!("    {GOPLS_MODULE_PATH}@v0.23.0+dirty"));
        assert_eq!(
            lines[4],
            format!("    {CLIENT_MODULE_PATH}@{CLIENT_VERSION}")
        );
        assert_eq!(lines[5], format!("go: {}", buildinfo::GO_VERSION));
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn modinfo_matches_go_line_format() {
        let text = render_modinfo(&version_info());
        let lines: Vec<&str> = text.lines().collect();

        assert_eq!(lines[0], format!("path\t{CLIENT_PATH}"));
        assert_eq!(
            lines[1],
            format!("mod\t{GOPLS_MODULE_PATH}\tv0.23.0+dirty\t")
        );
        assert_eq!(
            lines[2],
            format!("dep\t{CLIENT_MODULE_PATH}\t{CLIENT_VERSION}\t")
        );
        assert_eq!(lines[3], format!("build\tGOOS={}", buildinfo::GOOS));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn modinfo_formats_replacement() {
        let mut info = version_info();
        info.deps[0].replace = Some(Box::new(Module {
            path: "../local",
            version: String::new(),
            sum: "",
            replace: None,
        }));

        let text = render_modinfo(&info);

        assert!(
            text.contains(&format!(
                "dep\t{CLIENT_MODULE_PATH}\t{CLIENT_VERSION}\n=>\t../local\t\t\n"
            )),
            "{text}"
        );
    }

    #[test]
    fn build_settings_need_no_quoting() {
        // Go's ParseBuildInfo rejects unquoted keys containing '=', space, tab, newline or
        // quotes, and unquoted values containing whitespace or quotes; `render_modinfo`
        // never quotes, so every setting must avoid those characters.
        for setting in version_info().settings {
            assert!(!setting.key.is_empty());
            assert!(
                !setting.key.contains(['=', ' ', '\t', '\r', '\n', '"', '`']),
                "key {:?}",
                setting.key
            );
            assert!(
                !setting.value.contains([' ', '\t', '\r', '\n', '"', '`']),
                "value {:?}",
                setting.value
            );
        }
    }
}
