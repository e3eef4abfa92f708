//! The workspace registry: configured and discovered workspaces, each with at
//! most one gopls instance, started lazily by the first session and shared by
//! all sessions of that workspace.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::config::{is_valid_workspace_name, GoplsSettings, WorkspaceConfig};
use crate::gopls::GoplsBinary;
use crate::instance::{Instance, InstanceError};
use crate::launcher::{effective_env, LaunchSpec};

/// One workspace and its gopls instance.
#[derive(Debug)]
pub struct Workspace {
    pub name: String,
    pub root: PathBuf,
    /// Effective gopls environment (defaults, server-wide, per-workspace).
    pub env: BTreeMap<String, String>,
    /// Effective default gopls settings (server-wide, then per-workspace keys).
    pub settings: GoplsSettings,
    instance: tokio::sync::Mutex<Option<Arc<Instance>>>,
}

impl Workspace {
    /// Returns the running instance, starting gopls if none is running. The
    /// lock makes concurrent first sessions share one start.
    pub async fn instance(&self, launch: &LaunchContext) -> Result<Arc<Instance>, InstanceError> {
        let mut slot = self.instance.lock().await;
        if let Some(instance) = slot.as_ref() {
            if instance.is_running() {
                return Ok(instance.clone());
            }
        }

        let mut env = launch.telemetry_env.clone();
        env.extend(self.env.clone());
        let spec = LaunchSpec {
            gopls: launch.gopls.path.clone(),
            workspace: self.name.clone(),
            root: self.root.clone(),
            env,
            socket: PathBuf::new(),
            logfile: launch.log_dir.join(format!("{}-gopls.log", self.name)),
        };
        let instance = Instance::start(spec, &launch.run_dir, launch.start_timeout).await?;
        tracing::info!(
            workspace.name = %self.name,
            gopls.pid = instance.pid,
            gopls.version = %launch.gopls.version,
            env = ?self.env,
            "gopls started"
        );
        *slot = Some(instance.clone());
        Ok(instance)
    }

    /// The current instance, if one was started, without starting one.
    pub async fn current_instance(&self) -> Option<Arc<Instance>> {
        self.instance.lock().await.clone()
    }

    /// The workspace's status entry.
    pub async fn status(&self) -> remote_gopls_proto::pb::WorkspaceStatus {
        let instance = self.current_instance().await;
        let last_exit = instance
            .as_ref()
            .and_then(|i| i.exit_info())
            .map(|e| e.status)
            .unwrap_or_default();
        let instance = instance.map(|i| remote_gopls_proto::pb::InstanceStatus {
            pid: i.pid,
            state: if i.is_running() { "running" } else { "exited" }.to_owned(),
            working_set_bytes: 0,
            limit_bytes: 0,
            oom_kills: 0,
            sessions: i.sessions() as u32,
            uptime_seconds: i.started_at.elapsed().as_secs(),
            env: i.spec.env.clone().into_iter().collect(),
            cgroup: String::new(),
        });
        remote_gopls_proto::pb::WorkspaceStatus {
            name: self.name.clone(),
            root: self.root.display().to_string(),
            memory_limit_bytes: 0,
            oom_kills_total: 0,
            last_exit,
            instance,
        }
    }

    /// Stops the instance, if any.
    pub async fn stop(&self, grace: std::time::Duration) {
        let instance = self.instance.lock().await.take();
        if let Some(instance) = instance {
            instance.stop(grace).await;
        }
    }
}

/// What starting a gopls instance needs from the server.
#[derive(Debug, Clone)]
pub struct LaunchContext {
    pub gopls: GoplsBinary,
    pub run_dir: PathBuf,
    pub log_dir: PathBuf,
    pub telemetry_env: BTreeMap<String, String>,
    pub start_timeout: std::time::Duration,
}

/// All workspaces the server can serve.
#[derive(Debug)]
pub struct Registry {
    workspaces: RwLock<HashMap<String, Arc<Workspace>>>,
    /// Directory whose subdirectories are workspaces; rescanned on a miss.
    workspaces_dir: Option<PathBuf>,
    server_env: BTreeMap<String, String>,
    server_settings: GoplsSettings,
}

impl Registry {
    pub fn new(
        configured: &[WorkspaceConfig],
        workspaces_dir: Option<PathBuf>,
        server_env: BTreeMap<String, String>,
        server_settings: GoplsSettings,
    ) -> Registry {
        let registry = Registry {
            workspaces: RwLock::new(HashMap::new()),
            workspaces_dir,
            server_env,
            server_settings,
        };
        for ws in configured {
            registry.insert(&ws.name, &ws.root, &ws.gopls_env, &ws.gopls_settings);
        }
        registry.scan_dir();
        registry
    }

    fn insert(
        &self,
        name: &str,
        root: &Path,
        env: &BTreeMap<String, String>,
        settings: &GoplsSettings,
    ) {
        let mut effective_settings = self.server_settings.clone();
        effective_settings.extend(settings.iter().map(|(k, v)| (k.clone(), v.clone())));
        let workspace = Workspace {
            name: name.to_owned(),
            root: root.to_path_buf(),
            env: effective_env(&self.server_env, env),
            settings: effective_settings,
            instance: tokio::sync::Mutex::new(None),
        };
        self.workspaces
            .write()
            .unwrap()
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(workspace));
    }

    /// Adds every subdirectory of the workspaces directory not yet known.
    fn scan_dir(&self) {
        let Some(dir) = &self.workspaces_dir else {
            return;
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "failed to read workspaces directory");
                return;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(root) = entry.path().canonicalize() else {
                continue;
            };
            if root.is_dir()
                && is_valid_workspace_name(&name)
                && !self.workspaces.read().unwrap().contains_key(&name)
            {
                tracing::info!(workspace.name = %name, root = %root.display(), "discovered workspace");
                self.insert(&name, &root, &BTreeMap::new(), &GoplsSettings::new());
            }
        }
    }

    /// Finds a workspace by name, rescanning the workspaces directory once
    /// when the name is not known yet.
    pub fn get(&self, name: &str) -> Option<Arc<Workspace>> {
        if let Some(ws) = self.workspaces.read().unwrap().get(name) {
            return Some(ws.clone());
        }
        if self.workspaces_dir.is_some() && is_valid_workspace_name(name) {
            self.scan_dir();
            return self.workspaces.read().unwrap().get(name).cloned();
        }
        None
    }

    /// Workspace names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.workspaces.read().unwrap().keys().cloned().collect();
        names.sort();
        names
    }

    pub fn all(&self) -> Vec<Arc<Workspace>> {
        self.workspaces.read().unwrap().values().cloned().collect()
    }
}
