//! The gopls command line and environment.
//!
//! gopls runs in daemon mode on a unix socket (`gopls serve
//! -listen=unix;<socket>`), so every session of a workspace opens its own
//! connection to one process and shares its cache. The environment is the
//! server's own, overlaid with the tuned Go runtime defaults, then the
//! server-wide and per-workspace settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::cgroup::InstanceGroup;
use crate::config::MemoryConfig;

/// Everything needed to start one gopls process.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub gopls: PathBuf,
    pub workspace: String,
    pub root: PathBuf,
    /// Variables set for gopls on top of the inherited environment.
    pub env: BTreeMap<String, String>,
    pub socket: PathBuf,
    pub logfile: PathBuf,
    /// Loopback address of gopls's debug server (pprof), known only to the
    /// server; `None` leaves the debug server off.
    pub debug_addr: Option<std::net::SocketAddr>,
}

/// Merges the server-wide gopls environment (which already contains the
/// defaults) with a workspace's own values; the workspace wins.
pub fn effective_env(
    server: &BTreeMap<String, String>,
    workspace: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = server.clone();
    env.extend(workspace.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Prepares a configuration home in which Go telemetry is off and returns
/// the variables that point gopls at it.
///
/// gopls calls golang.org/x/telemetry's `Start`, which re-executes gopls as
/// a sidecar process unless the mode file `<os.UserConfigDir()>/go/telemetry/mode`
/// says `off`. Pointing XDG_CONFIG_HOME at a directory of the server's
/// stops that extra process without touching the user's own settings. GOENV
/// keeps the go command reading the user's `go env -w` file from its usual
/// place.
pub fn telemetry_off_env(data_dir: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let config_home = data_dir.join("gopls-config");
    let mode_dir = config_home.join("go").join("telemetry");
    std::fs::create_dir_all(&mode_dir)?;
    std::fs::write(mode_dir.join("mode"), "off")?;

    let mut env = BTreeMap::new();
    if std::env::var_os("GOENV").is_none() {
        let user_config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        if let Some(dir) = user_config {
            env.insert(
                "GOENV".to_owned(),
                dir.join("go").join("env").display().to_string(),
            );
        }
    }
    env.insert(
        "XDG_CONFIG_HOME".to_owned(),
        config_home.display().to_string(),
    );
    Ok(env)
}

/// Picks a free loopback port for gopls's debug server. The port is free
/// when this returns; another process could take it before gopls binds it,
/// in which case gopls fails to start its debug server and keeps serving.
pub fn free_loopback_addr() -> std::io::Result<std::net::SocketAddr> {
    std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()
}

/// Sets GOMEMLIMIT from the memory limit unless the environment already
/// sets it. The Go collector then works harder as the heap nears the limit,
/// before the kernel has to OOM-kill the process.
pub fn with_gomemlimit(
    mut env: BTreeMap<String, String>,
    memory: &MemoryConfig,
) -> BTreeMap<String, String> {
    env.entry("GOMEMLIMIT".to_owned())
        .or_insert_with(|| memory.gomemlimit().to_string());
    env
}

impl LaunchSpec {
    /// Builds the gopls command. The child leads its own process group, so
    /// stopping it also stops the `go list` processes it started, and it is
    /// sent SIGKILL if the server thread that started it dies. With a cgroup,
    /// the child enters it between fork and exec, so gopls and everything it
    /// starts are limited from their first instruction.
    pub fn command(&self, group: Option<&InstanceGroup>) -> Command {
        let mut command = Command::new(&self.gopls);
        command
            .arg("serve")
            .arg(format!("-listen=unix;{}", self.socket.display()))
            .arg("-listen.timeout=0")
            .arg(format!("-logfile={}", self.logfile.display()))
            .args(self.debug_addr.map(|addr| format!("-debug={addr}")))
            .current_dir(&self.root)
            .envs(&self.env)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);

        if let Some(hook) = group.and_then(InstanceGroup::pre_exec_hook) {
            // SAFETY: the hook only calls write(2) on a descriptor opened
            // before fork, which is async-signal-safe.
            unsafe {
                command.pre_exec(hook);
            }
        }

        // SAFETY: the closure runs between fork and exec and only calls
        // prctl, which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_env_wins() {
        let server = BTreeMap::from([
            ("GOGC".to_owned(), "20".to_owned()),
            ("GOMAXPROCS".to_owned(), "2".to_owned()),
        ]);
        let workspace = BTreeMap::from([("GOGC".to_owned(), "50".to_owned())]);
        let env = effective_env(&server, &workspace);
        assert_eq!(env["GOGC"], "50");
        assert_eq!(env["GOMAXPROCS"], "2");
    }

    #[test]
    fn gomemlimit_from_limit_unless_set() {
        let memory = MemoryConfig {
            limit: crate::bytesize::ByteSize(1000),
            high: None,
            gomemlimit_fraction: 0.9,
        };
        let env = with_gomemlimit(BTreeMap::new(), &memory);
        assert_eq!(env["GOMEMLIMIT"], "900");
        let set = BTreeMap::from([("GOMEMLIMIT".to_owned(), "512MiB".to_owned())]);
        assert_eq!(with_gomemlimit(set, &memory)["GOMEMLIMIT"], "512MiB");
    }

    #[test]
    fn telemetry_mode_file_is_off() {
        let dir = tempfile::tempdir().unwrap();
        let env = telemetry_off_env(dir.path()).unwrap();
        let home = PathBuf::from(&env["XDG_CONFIG_HOME"]);
        assert_eq!(
            std::fs::read_to_string(home.join("go/telemetry/mode")).unwrap(),
            "off"
        );
    }

    #[test]
    fn command_line_uses_unix_socket() {
        let spec = LaunchSpec {
            gopls: "/bin/gopls".into(),
            workspace: "w".into(),
            root: "/tmp".into(),
            env: BTreeMap::new(),
            socket: "/run/x/gopls.sock".into(),
            logfile: "/var/log/gopls.log".into(),
            debug_addr: None,
        };
        let command = spec.command(None);
        let args: Vec<_> = command
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "serve",
                "-listen=unix;/run/x/gopls.sock",
                "-listen.timeout=0",
                "-logfile=/var/log/gopls.log"
            ]
        );
    }
}
