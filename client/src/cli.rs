//! Command-line parsing that accepts the gopls command lines editors pass to this client.
//!
//! The grammar follows gopls v0.23.0 and master (`gopls/internal/cmd`): Go `flag`-package
//! syntax, where a flag has one or two leading dashes, takes its value as `-flag=value` or
//! `-flag value`, and a boolean flag takes a value only in the `=` form. With no subcommand
//! the client serves LSP on stdio. Serve flags may come before or after `serve`. Flags of
//! `version` come after `version`. Global flags come before the subcommand (or after `serve`).
//!
//! The parser is written by hand for two reasons. clap has no single-dash long options such
//! as `-rpc.trace`. And errors must match gopls's shape, `<program>: <error>` and a `Usage:`
//! block on stderr with exit status 2, because vscode-go looks for `Usage:` after a crash
//! of a server binary named `gopls` to suggest fixing `go.languageServerFlags`.

use std::ffi::OsString;
use std::path::PathBuf;

/// Program name used in usage text and error messages.
pub const PROGRAM: &str = "remote-gopls";

/// Exit status for an invalid command line, the same as Go's `flag` package and gopls.
pub const USAGE_ERROR_EXIT_CODE: u8 = 2;

/// `-logfile` value that gopls expands to a per-process file in the temporary directory.
const AUTO_LOGFILE: &str = "auto";

/// Action requested on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve LSP on stdin and stdout (no subcommand, or `serve`).
    Serve(ServeOptions),

    /// Print version information (`version`), as JSON with `-json` and as a `Build info`
    /// block with the global `-v`.
    Version { json: bool, verbose: bool },

    /// Print usage to stdout (`help`, `-h`, `-help`).
    Help,
}

/// Options of the serve command that the client acts on itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeOptions {
    /// Whether to trace every LSP message in the client log (`-rpc.trace`).
    pub rpc_trace: bool,

    /// Client log file (`-logfile`); `None` means stderr. `-logfile=auto` becomes
    /// `remote-gopls-<pid>.log` in the temporary directory, like gopls's `gopls-<pid>.log`.
    pub logfile: Option<PathBuf>,
}

/// Invalid command line. Messages use the wording of Go's `flag` package and gopls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("flag provided but not defined: -{0}")]
    UnknownFlag(String),

    #[error("flag needs an argument: -{0}")]
    MissingValue(String),

    #[error("invalid boolean value {value:?} for -{flag}: use true or false")]
    InvalidBool { flag: String, value: String },

    #[error("flag -{flag} must be placed after the command {command}")]
    MisplacedFlag { flag: String, command: &'static str },

    #[error("unknown command {0:?}")]
    UnknownCommand(String),

    #[error("{command} does not take arguments, got {arguments:?}")]
    UnexpectedArguments {
        command: &'static str,
        arguments: Vec<String>,
    },

    #[error("argument {0:?} is not valid UTF-8")]
    NotUtf8(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subcommand {
    Serve,
    Version,
    Help,
}

impl Subcommand {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "serve" => Some(Self::Serve),
            "version" => Some(Self::Version),
            "help" => Some(Self::Help),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Serve => "serve",
            Self::Version => "version",
            Self::Help => "help",
        }
    }
}

/// Position on the command line where gopls accepts a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Before the subcommand (and, for compatibility, after `serve`).
    Global,
    /// Before or after `serve`.
    Serve,
    /// After `version` only.
    Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagAction {
    RpcTrace,
    Logfile,
    Verbose,
    Json,
    /// A gopls flag that means nothing to the client; it is accepted and dropped.
    Ignore,
}

#[derive(Debug, Clone, Copy)]
struct FlagSpec {
    takes_value: bool,
    scope: Scope,
    action: FlagAction,
}

/// Looks up a flag name (without dashes) among the gopls flags the client accepts.
fn lookup_flag(name: &str) -> Option<FlagSpec> {
    let (takes_value, scope, action) = match name {
        "v" | "verbose" | "vv" | "veryverbose" => (false, Scope::Global, FlagAction::Verbose),
        "remote" | "remote.debug" | "remote.logfile" | "remote.listen.timeout" | "otel" => {
            (true, Scope::Global, FlagAction::Ignore)
        }
        _ if name.starts_with("profile.") => (true, Scope::Global, FlagAction::Ignore),
        "rpc.trace" => (false, Scope::Serve, FlagAction::RpcTrace),
        "logfile" => (true, Scope::Serve, FlagAction::Logfile),
        "mode" | "listen" | "listen.timeout" | "debug" | "mcp.listen" => {
            (true, Scope::Serve, FlagAction::Ignore)
        }
        "json" => (false, Scope::Version, FlagAction::Json),
        _ => return None,
    };
    Some(FlagSpec {
        takes_value,
        scope,
        action,
    })
}

/// Parses a boolean flag value the way Go's `strconv.ParseBool` does.
fn parse_bool(flag: &str, value: &str) -> Result<bool, UsageError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(UsageError::InvalidBool {
            flag: flag.to_string(),
            value: value.to_string(),
        }),
    }
}

fn resolve_logfile(value: &str) -> Option<PathBuf> {
    match value {
        "" => None,
        AUTO_LOGFILE => {
            Some(std::env::temp_dir().join(format!("{PROGRAM}-{}.log", std::process::id())))
        }
        path => Some(PathBuf::from(path)),
    }
}

/// Flag values collected while scanning the arguments.
#[derive(Debug, Default)]
struct Parsed {
    serve: ServeOptions,
    verbose: bool,
    json: bool,
    subcommand: Option<Subcommand>,
    /// Positional arguments after the subcommand.
    arguments: Vec<String>,
}

/// Parses the arguments after the program name.
///
/// Returns [`Command::Help`] as soon as `-h` or `-help` appears, like Go's `flag` package.
pub fn parse_args<I>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = OsString>,
{
    let args = args
        .into_iter()
        .map(|arg| {
            arg.into_string()
                .map_err(|arg| UsageError::NotUtf8(arg.to_string_lossy().into_owned()))
        })
        .collect::<Result<Vec<String>, UsageError>>()?;

    let mut parsed = Parsed::default();
    let mut index = 0;
    while index < args.len() {
        let arg = &args[index];
        index += 1;

        if arg == "--" {
            take_after_terminator(&mut parsed, &args[index..])?;
            break;
        }

        let Some(flag) = arg.strip_prefix('-').filter(|flag| !flag.is_empty()) else {
            take_positional(&mut parsed, arg)?;
            continue;
        };

        let flag = flag.strip_prefix('-').unwrap_or(flag);
        let (name, inline_value) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (flag, None),
        };

        if name == "h" || name == "help" {
            return Ok(Command::Help);
        }

        let spec = lookup_flag(name).ok_or_else(|| UsageError::UnknownFlag(name.to_string()))?;
        check_scope(&parsed, name, spec.scope)?;

        let value = if spec.takes_value {
            match inline_value {
                Some(value) => value.to_string(),
                None => {
                    let value = args
                        .get(index)
                        .ok_or_else(|| UsageError::MissingValue(name.to_string()))?;
                    index += 1;
                    value.clone()
                }
            }
        } else {
            inline_value.unwrap_or("true").to_string()
        };

        apply_flag(&mut parsed, name, spec.action, &value)?;
    }

    finish(parsed)
}

/// Handles the arguments after `--`: an optional subcommand, then positional arguments.
fn take_after_terminator(parsed: &mut Parsed, rest: &[String]) -> Result<(), UsageError> {
    let mut rest = rest.iter();
    if parsed.subcommand.is_none() {
        if let Some(first) = rest.as_slice().first() {
            if let Some(subcommand) = Subcommand::from_name(first) {
                parsed.subcommand = Some(subcommand);
                rest.next();
            }
        }
    }
    parsed.arguments.extend(rest.cloned());
    Ok(())
}

fn take_positional(parsed: &mut Parsed, arg: &str) -> Result<(), UsageError> {
    if parsed.subcommand.is_some() {
        parsed.arguments.push(arg.to_string());
        return Ok(());
    }

    let subcommand =
        Subcommand::from_name(arg).ok_or_else(|| UsageError::UnknownCommand(arg.to_string()))?;
    parsed.subcommand = Some(subcommand);
    Ok(())
}

/// Rejects a flag used where gopls would not accept it.
///
/// Serve flags before `version` are accepted and ignored, as gopls v0.23.0 does.
fn check_scope(parsed: &Parsed, name: &str, scope: Scope) -> Result<(), UsageError> {
    let misplaced = || UsageError::MisplacedFlag {
        flag: name.to_string(),
        command: Subcommand::Version.name(),
    };

    match (parsed.subcommand, scope) {
        (None, Scope::Global | Scope::Serve) => Ok(()),
        (None, Scope::Version) => Err(misplaced()),
        (Some(Subcommand::Serve), Scope::Global | Scope::Serve) => Ok(()),
        (Some(Subcommand::Version), Scope::Version) => Ok(()),
        (Some(_), _) => Err(UsageError::UnknownFlag(name.to_string())),
    }
}

fn apply_flag(
    parsed: &mut Parsed,
    name: &str,
    action: FlagAction,
    value: &str,
) -> Result<(), UsageError> {
    match action {
        FlagAction::RpcTrace => parsed.serve.rpc_trace = parse_bool(name, value)?,
        FlagAction::Logfile => parsed.serve.logfile = resolve_logfile(value),
        FlagAction::Verbose => parsed.verbose = parse_bool(name, value)?,
        FlagAction::Json => parsed.json = parse_bool(name, value)?,
        FlagAction::Ignore => {}
    }
    Ok(())
}

fn finish(parsed: Parsed) -> Result<Command, UsageError> {
    let subcommand = parsed.subcommand.unwrap_or(Subcommand::Serve);

    // `help <topic>` prints the same usage for any topic.
    if subcommand == Subcommand::Help {
        return Ok(Command::Help);
    }
    if !parsed.arguments.is_empty() {
        return Err(UsageError::UnexpectedArguments {
            command: subcommand.name(),
            arguments: parsed.arguments,
        });
    }

    match subcommand {
        Subcommand::Serve => Ok(Command::Serve(parsed.serve)),
        Subcommand::Version => Ok(Command::Version {
            json: parsed.json,
            verbose: parsed.verbose,
        }),
        Subcommand::Help => Ok(Command::Help),
    }
}

/// Returns the short `Usage:` block printed after a command-line error.
pub fn usage_text() -> String {
    format!(
        "Usage:
  {PROGRAM} [flags] [serve [flags]]
  {PROGRAM} [-v] version [-json]
  {PROGRAM} help

Run '{PROGRAM} help' for the list of flags.
"
    )
}

/// Returns the text printed on stderr for an invalid command line.
pub fn usage_error_text(error: &UsageError) -> String {
    format!("{PROGRAM}: {error}\n\n{}", usage_text())
}

/// Returns the full help printed on stdout for `help`, `-h` and `-help`.
pub fn help_text() -> String {
    format!(
        "{PROGRAM} is a stand-in for gopls that forwards the Language Server Protocol to a
remote-gopls server, where gopls runs. It accepts the command lines editors pass to gopls.

Usage:
  {PROGRAM} [flags] [serve [flags]]
      Serve LSP on stdin and stdout. This is the default without a subcommand.
  {PROGRAM} [-v] version [-json]
      Print version information and exit.
  {PROGRAM} help
      Print this help and exit.

Serve flags (before or after 'serve'):
  -logfile=string
      file for the client log; \"auto\" means {PROGRAM}-<pid>.log in the temporary
      directory; default stderr
  -rpc.trace
      write every LSP message to the client log

Version flags (after 'version'):
  -json
      print the gopls-compatible build information as JSON

Global flags:
  -v, -verbose, -vv, -veryverbose
      verbose output of 'version'

Accepted and ignored because they configure a local gopls process:
  -mode, -listen, -listen.timeout, -debug, -mcp.listen, -remote, -remote.debug,
  -remote.logfile, -remote.listen.timeout, -otel, -profile.*
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, UsageError> {
        parse_args(args.iter().map(OsString::from))
    }

    fn serve(rpc_trace: bool, logfile: Option<&str>) -> Command {
        Command::Serve(ServeOptions {
            rpc_trace,
            logfile: logfile.map(PathBuf::from),
        })
    }

    fn version(json: bool, verbose: bool) -> Command {
        Command::Version { json, verbose }
    }

    fn unknown_flag(name: &str) -> UsageError {
        UsageError::UnknownFlag(name.to_string())
    }

    #[test]
    fn parse_table() {
        let cases: Vec<(&[&str], Result<Command, UsageError>)> = vec![
            // Serve: default, explicit, flags on either side.
            (&[], Ok(serve(false, None))),
            (&["serve"], Ok(serve(false, None))),
            (&["-rpc.trace"], Ok(serve(true, None))),
            (&["--rpc.trace"], Ok(serve(true, None))),
            (&["-rpc.trace=false"], Ok(serve(false, None))),
            (&["-rpc.trace=1"], Ok(serve(true, None))),
            (&["-rpc.trace", "serve"], Ok(serve(true, None))),
            (&["serve", "-rpc.trace"], Ok(serve(true, None))),
            (
                &["-logfile=/tmp/a.log"],
                Ok(serve(false, Some("/tmp/a.log"))),
            ),
            (
                &["-logfile", "/tmp/a.log"],
                Ok(serve(false, Some("/tmp/a.log"))),
            ),
            (
                &["--logfile", "/tmp/a.log"],
                Ok(serve(false, Some("/tmp/a.log"))),
            ),
            (
                &["serve", "-logfile", "-odd"],
                Ok(serve(false, Some("-odd"))),
            ),
            (&["-logfile="], Ok(serve(false, None))),
            (
                &["-rpc.trace", "serve", "--logfile=/tmp/b.log"],
                Ok(serve(true, Some("/tmp/b.log"))),
            ),
            // Flags of a local gopls process, accepted and ignored.
            (&["-mode=stdio"], Ok(serve(false, None))),
            (&["-mode", "stdio", "serve"], Ok(serve(false, None))),
            (&["serve", "-mode=stdio"], Ok(serve(false, None))),
            (
                &["-remote=auto", "-remote.debug=:0"],
                Ok(serve(false, None)),
            ),
            (
                &["-remote.logfile", "x", "-remote.listen.timeout=1m"],
                Ok(serve(false, None)),
            ),
            (
                &["-listen=localhost:0", "-listen.timeout", "1m"],
                Ok(serve(false, None)),
            ),
            (
                &["-debug=localhost:6060", "-mcp.listen=x"],
                Ok(serve(false, None)),
            ),
            (
                &["-v", "-verbose", "-vv", "-veryverbose"],
                Ok(serve(false, None)),
            ),
            (
                &["-profile.cpu=c", "-profile.mem", "m", "-profile.trace=t"],
                Ok(serve(false, None)),
            ),
            (&["-otel=http://localhost:4318"], Ok(serve(false, None))),
            (&["serve", "-v", "-remote=auto"], Ok(serve(false, None))),
            (&["--", "serve"], Ok(serve(false, None))),
            (&["-rpc.trace", "--"], Ok(serve(true, None))),
            // Version.
            (&["version"], Ok(version(false, false))),
            (&["version", "-json"], Ok(version(true, false))),
            (&["version", "--json"], Ok(version(true, false))),
            (&["version", "-json=false"], Ok(version(false, false))),
            (&["-v", "version"], Ok(version(false, true))),
            (&["-vv", "version", "-json"], Ok(version(true, true))),
            (
                &["-mode=stdio", "version", "-json"],
                Ok(version(true, false)),
            ),
            (&["--", "version"], Ok(version(false, false))),
            // Help.
            (&["help"], Ok(Command::Help)),
            (&["help", "serve"], Ok(Command::Help)),
            (&["-h"], Ok(Command::Help)),
            (&["-help"], Ok(Command::Help)),
            (&["--help"], Ok(Command::Help)),
            (&["serve", "-h"], Ok(Command::Help)),
            (&["version", "-h"], Ok(Command::Help)),
            // Errors.
            (&["-bogus"], Err(unknown_flag("bogus"))),
            (&["--bogus=1"], Err(unknown_flag("bogus"))),
            (&["serve", "-bogus"], Err(unknown_flag("bogus"))),
            (&["version", "-v"], Err(unknown_flag("v"))),
            (&["version", "-rpc.trace"], Err(unknown_flag("rpc.trace"))),
            (
                &["-json", "version"],
                Err(UsageError::MisplacedFlag {
                    flag: "json".to_string(),
                    command: "version",
                }),
            ),
            (
                &["-json"],
                Err(UsageError::MisplacedFlag {
                    flag: "json".to_string(),
                    command: "version",
                }),
            ),
            (
                &["bogus"],
                Err(UsageError::UnknownCommand("bogus".to_string())),
            ),
            (
                &["vulncheck"],
                Err(UsageError::UnknownCommand("vulncheck".to_string())),
            ),
            (&["-"], Err(UsageError::UnknownCommand("-".to_string()))),
            (
                &["-logfile"],
                Err(UsageError::MissingValue("logfile".to_string())),
            ),
            (
                &["serve", "-mode"],
                Err(UsageError::MissingValue("mode".to_string())),
            ),
            (
                &["-rpc.trace=yes"],
                Err(UsageError::InvalidBool {
                    flag: "rpc.trace".to_string(),
                    value: "yes".to_string(),
                }),
            ),
            (
                &["serve", "extra"],
                Err(UsageError::UnexpectedArguments {
                    command: "serve",
                    arguments: vec!["extra".to_string()],
                }),
            ),
            (
                &["version", "x", "y"],
                Err(UsageError::UnexpectedArguments {
                    command: "version",
                    arguments: vec!["x".to_string(), "y".to_string()],
                }),
            ),
            (
                &["--", "-rpc.trace"],
                Err(UsageError::UnexpectedArguments {
                    command: "serve",
                    arguments: vec!["-rpc.trace".to_string()],
                }),
            ),
        ];

        for (args, expected) in cases {
            assert_eq!(parse(args), expected, "args {args:?}");
        }
    }

    #[test]
    fn logfile_auto_uses_temp_dir_and_pid() {
        let expected =
            std::env::temp_dir().join(format!("remote-gopls-{}.log", std::process::id()));

        assert_eq!(parse(&["-logfile=auto"]), Ok(serve_with_path(expected)));
    }

    fn serve_with_path(path: PathBuf) -> Command {
        Command::Serve(ServeOptions {
            rpc_trace: false,
            logfile: Some(path),
        })
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_argument_is_rejected() {
        use std::os::unix::ffi::OsStringExt;

        let arg = OsString::from_vec(vec![b'-', b'l', 0xff]);

        assert!(matches!(parse_args([arg]), Err(UsageError::NotUtf8(_))));
    }

    #[test]
    fn error_text_has_program_and_usage() {
        let text = usage_error_text(&UsageError::UnknownFlag("bogus".to_string()));

        assert!(
            text.starts_with("remote-gopls: flag provided but not defined: -bogus\n"),
            "{text}"
        );
        assert!(text.contains("\nUsage:\n"), "{text}");
    }

    #[test]
    fn help_lists_every_accepted_flag() {
        let help = help_text();

        for flag in [
            "-logfile",
            "-rpc.trace",
            "-json",
            "-v",
            "-vv",
            "-mode",
            "-listen",
            "-debug",
            "-remote",
            "-otel",
            "-profile.*",
        ] {
            assert!(help.contains(flag), "{flag} missing from help");
        }
    }
}
