//! The workspace registry: configured and discovered workspaces, each with at
//! most one gopls instance, started lazily by the first session and shared by
//! all sessions of that workspace.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use remote_gopls_proto::pb;

use crate::cgroup::{CgroupManager, MemoryLimits};
use crate::config::{is_valid_workspace_name, GoplsSettings, MemoryConfig, WorkspaceConfig};
use crate::controller::restarts::{Pace, RestartPacer, RestartRules};
use crate::gopls::GoplsBinary;
use crate::instance::{Instance, InstanceError};
use crate::launcher::{effective_env, with_gomemlimit, LaunchSpec};
use crate::metrics::{ExitReason, Metrics};

/// One workspace and its gopls instance.
#[derive(Debug)]
pub struct Workspace {
    pub name: String,
    pub root: PathBuf,
    /// Effective gopls environment (defaults, server-wide, per-workspace).
    pub env: BTreeMap<String, String>,
    /// Effective default gopls settings (server-wide, then per-workspace keys).
    pub settings: GoplsSettings,
    pub memory: MemoryConfig,
    /// Serializes starts, so concurrent first sessions share one gopls.
    start_lock: tokio::sync::Mutex<()>,
    /// The current instance (running, or exited and not yet replaced).
    /// `None` before the first start and after a deliberate stop.
    current: Mutex<Option<Arc<Instance>>>,
    /// Backoff and crash-loop state of restarts.
    pacer: Mutex<RestartPacer>,
    /// Whether the last start attempt failed, so the next one is a restart.
    last_start_failed: std::sync::atomic::AtomicBool,
    /// Controller restart reasons by gopls pid, shown by sessions when they
    /// move to the next instance.
    restart_reasons: Mutex<HashMap<u32, String>>,
    /// OOM kills seen in this workspace's cgroups since the server started.
    oom_kills_total: AtomicU64,
    /// Exit status of the last gopls process of this workspace.
    last_exit: Mutex<Option<String>>,
}

impl Workspace {
    /// Returns the running instance, starting gopls if none is running. The
    /// start lock makes concurrent sessions share one start. Replacing an
    /// instance that exited or that the controller stopped counts as a
    /// restart: it waits out the backoff, and a crash loop marks the
    /// workspace degraded instead of starting.
    pub async fn instance(
        self: &Arc<Self>,
        launch: &LaunchContext,
    ) -> Result<Arc<Instance>, InstanceError> {
        let _start = self.start_lock.lock().await;
        if let Some(instance) = self.current() {
            if instance.is_running() {
                return Ok(instance.clone());
            }
        }
        if let Some(reason) = self.degraded() {
            return Err(InstanceError::Degraded(reason));
        }

        let previous = self.current.lock().unwrap().take();
        if let Some(old) = &previous {
            old.release_group().await;
            // Restarts the controller started are counted by the controller.
            // Reasons stay in the map (one short string per controller
            // restart) so every session of the old instance can show them.
            if !self.restart_reasons.lock().unwrap().contains_key(&old.pid) {
                launch.metrics.workspace_restart(&self.name, "crash");
            }
        }
        if previous.is_some() || self.last_start_failed.load(Ordering::Relaxed) {
            let pace = self
                .pacer
                .lock()
                .unwrap()
                .restart(std::time::Instant::now());
            match pace {
                Pace::After(delay) => {
                    if !delay.is_zero() {
                        tracing::info!(workspace.name = %self.name, ?delay, "waiting before restarting gopls");
                        tokio::time::sleep(delay).await;
                    }
                }
                Pace::Degraded { restarts, window } => {
                    let reason = format!(
                        "gopls for workspace {:?} was restarted {restarts} times within {} minutes; automatic restarts are stopped. Open a new session (reload the editor window) or run `remote-gopls-server reset {}` to try again. Server log: {}",
                        self.name,
                        window.as_secs() / 60,
                        self.name,
                        launch.log_dir.join(format!("{}-gopls.log", self.name)).display()
                    );
                    tracing::error!(workspace.name = %self.name, restarts, "gopls is crash-looping; workspace marked degraded");
                    self.pacer.lock().unwrap().degrade(reason.clone());
                    return Err(InstanceError::Degraded(reason));
                }
            }
        }

        let started = self.start(launch).await;
        self.last_start_failed
            .store(started.is_err(), Ordering::Relaxed);
        let instance = started?;
        *self.current.lock().unwrap() = Some(instance.clone());
        Ok(instance)
    }

    async fn start(
        self: &Arc<Self>,
        launch: &LaunchContext,
    ) -> Result<Arc<Instance>, InstanceError> {
        let limits = MemoryLimits {
            max: self.memory.limit.bytes(),
            high: self.memory.high.map(|h| h.bytes()),
        };
        let cgroups = launch.cgroups.clone();
        let name = self.name.clone();
        let group = tokio::task::spawn_blocking(move || cgroups.create(&name, &limits))
            .await
            .map_err(|e| InstanceError::Cgroup(e.to_string()))?
            .map_err(|e| InstanceError::Cgroup(e.to_string()))?;

        let mut env = launch.telemetry_env.clone();
        env.extend(with_gomemlimit(self.env.clone(), &self.memory));
        let spec = LaunchSpec {
            gopls: launch.gopls.path.clone(),
            workspace: self.name.clone(),
            root: self.root.clone(),
            env,
            socket: PathBuf::new(),
            logfile: launch.log_dir.join(format!("{}-gopls.log", self.name)),
            debug_addr: crate::launcher::free_loopback_addr().ok(),
        };
        let instance =
            match Instance::start(spec, group, &launch.run_dir, launch.start_timeout).await {
                Ok(instance) => instance,
                Err(e) => {
                    launch.metrics.gopls_start_failed();
                    if let InstanceError::OomKilledDuringStart { oom_kills, status } = &e {
                        self.record_oom(*oom_kills, status, None, &launch.metrics);
                    }
                    *self.last_exit.lock().unwrap() = Some(e.to_string());
                    return Err(e);
                }
            };
        tracing::info!(
            workspace.name = %self.name,
            gopls.pid = instance.pid,
            gopls.version = %launch.gopls.version,
            memory.mode = %launch.cgroups.mode(),
            memory.limit = %self.memory.limit,
            cgroup = ?instance.cgroup_path(),
            env = ?instance.spec.env,
            "gopls started"
        );
        self.watch_exit(instance.clone(), launch.metrics.clone());
        Ok(instance)
    }

    /// Returns the current instance, running or not, without starting one.
    pub fn current(&self) -> Option<Arc<Instance>> {
        self.current.lock().unwrap().clone()
    }

    /// Returns the current instance if it is running.
    pub fn running(&self) -> Option<Arc<Instance>> {
        self.current().filter(|i| i.is_running())
    }

    /// Returns the reason automatic restarts stopped, if they did.
    pub fn degraded(&self) -> Option<String> {
        self.pacer.lock().unwrap().degraded().map(str::to_owned)
    }

    /// Clears the degraded mark; returns whether it was set.
    pub fn reset_degraded(&self) -> bool {
        let mut pacer = self.pacer.lock().unwrap();
        let was = pacer.degraded().is_some();
        pacer.reset();
        if was {
            tracing::info!(workspace.name = %self.name, "degraded mark cleared; gopls may start again");
        }
        was
    }

    /// Records why the controller is about to stop the instance `pid`.
    pub fn set_restart_reason(&self, pid: u32, reason: String) {
        self.restart_reasons.lock().unwrap().insert(pid, reason);
    }

    /// Returns the message sessions show after moving off the instance `old`:
    /// the controller's reason, else how the process ended.
    pub fn restart_message(&self, old: &Instance) -> String {
        if let Some(reason) = self.restart_reasons.lock().unwrap().get(&old.pid) {
            return reason.clone();
        }
        let oom_kills = match old.usage() {
            Some(Ok(usage)) => usage.oom_kills,
            _ => 0,
        };
        if oom_kills > 0 {
            return format!(
                "gopls for workspace {:?} was OOM-killed at its {} memory limit and was restarted; raise memory_limit if this repeats",
                self.name, self.memory.limit
            );
        }
        match old.exit_info() {
            Some(info) => format!(
                "gopls for workspace {:?} exited ({}) and was restarted",
                self.name, info.status
            ),
            None => format!(
                "gopls for workspace {:?} closed the connection and the session reconnected",
                self.name
            ),
        }
    }

    /// Stops the running instance deliberately (idle eviction, budget): the
    /// next session starts a fresh one without restart pacing.
    pub async fn evict(&self, grace: std::time::Duration, why: &str) -> bool {
        let _start = self.start_lock.lock().await;
        let Some(instance) = self.current.lock().unwrap().take() else {
            return false;
        };
        tracing::info!(workspace.name = %self.name, gopls.pid = instance.pid, reason = why, "evicting gopls");
        instance.stop(grace).await;
        true
    }

    /// Counts a started instance as running until it exits, then records
    /// how it ended and whether the kernel OOM-killed anything in its cgroup.
    fn watch_exit(self: &Arc<Self>, instance: Arc<Instance>, metrics: Arc<Metrics>) {
        metrics.gopls_started();
        let workspace = self.clone();
        tokio::spawn(async move {
            let info = instance.wait_exit().await;
            let reason = if instance.stop_requested() {
                ExitReason::Stopped
            } else if info.signal.is_some() {
                ExitReason::Signal
            } else if info.status == "exit status: 0" {
                ExitReason::Exited
            } else {
                ExitReason::Failed
            };
            metrics.gopls_exited(reason);

            let oom_kills = match instance.usage() {
                Some(Ok(usage)) => usage.oom_kills,
                _ => 0,
            };
            if oom_kills > 0 {
                workspace.record_oom(oom_kills, &info.status, Some(instance.pid), &metrics);
            }
            *workspace.last_exit.lock().unwrap() = Some(info.status);
        });
    }

    fn record_oom(&self, oom_kills: u64, status: &str, pid: Option<u32>, metrics: &Metrics) {
        self.oom_kills_total.fetch_add(oom_kills, Ordering::Relaxed);
        metrics.workspace_oom_kills(&self.name, oom_kills);
        tracing::warn!(
            workspace.name = %self.name,
            gopls.pid = ?pid,
            oom_kills,
            memory.limit = %self.memory.limit,
            status = %status,
            "gopls was OOM-killed: the kernel killed processes in its cgroup at the memory limit"
        );
    }

    /// Builds the workspace's status entry.
    pub async fn status(&self) -> pb::WorkspaceStatus {
        let instance = self.current().map(|i| {
            let usage = match i.usage() {
                Some(Ok(usage)) => usage,
                Some(Err(e)) => {
                    tracing::debug!(workspace.name = %self.name, error = %e, "cannot read memory usage");
                    Default::default()
                }
                None => Default::default(),
            };
            pb::InstanceStatus {
                pid: i.pid,
                state: if i.is_running() { "running" } else { "exited" }.to_owned(),
                working_set_bytes: usage.working_set,
                limit_bytes: usage.limit,
                oom_kills: usage.oom_kills,
                sessions: i.sessions() as u32,
                uptime_seconds: i.started_at.elapsed().as_secs(),
                env: i.spec.env.clone().into_iter().collect(),
                cgroup: i.cgroup_path().map(|p| p.display().to_string()).unwrap_or_default(),
            }
        });
        pb::WorkspaceStatus {
            name: self.name.clone(),
            root: self.root.display().to_string(),
            memory_limit_bytes: self.memory.limit.bytes(),
            oom_kills_total: self.oom_kills_total.load(Ordering::Relaxed),
            last_exit: self.last_exit.lock().unwrap().clone().unwrap_or_default(),
            instance,
            heap_profiles: Vec::new(),
            degraded: self.degraded().unwrap_or_default(),
        }
    }

    /// Stops the instance, if any, at server shutdown.
    pub async fn stop(&self, grace: std::time::Duration) {
        let instance = self.current.lock().unwrap().take();
        if let Some(instance) = instance {
            instance.stop(grace).await;
        }
    }
}

/// Server-wide settings and handles that starting a gopls instance needs.
#[derive(Debug, Clone)]
pub struct LaunchContext {
    pub gopls: GoplsBinary,
    pub run_dir: PathBuf,
    pub log_dir: PathBuf,
    pub telemetry_env: BTreeMap<String, String>,
    pub start_timeout: std::time::Duration,
    pub cgroups: Arc<CgroupManager>,
    pub metrics: Arc<Metrics>,
}

/// All workspaces the server can serve.
#[derive(Debug)]
pub struct Registry {
    workspaces: RwLock<HashMap<String, Arc<Workspace>>>,
    /// Directory whose subdirectories are workspaces; rescanned on a miss.
    workspaces_dir: Option<PathBuf>,
    server_env: BTreeMap<String, String>,
    server_settings: GoplsSettings,
    /// Memory settings of discovered workspaces.
    server_memory: MemoryConfig,
    restart_rules: RestartRules,
}

impl Registry {
    pub fn new(
        configured: &[WorkspaceConfig],
        workspaces_dir: Option<PathBuf>,
        server_env: BTreeMap<String, String>,
        server_settings: GoplsSettings,
        server_memory: MemoryConfig,
        restart_rules: RestartRules,
    ) -> Registry {
        let registry = Registry {
            workspaces: RwLock::new(HashMap::new()),
            workspaces_dir,
            server_env,
            server_settings,
            server_memory,
            restart_rules,
        };
        for ws in configured {
            registry.insert(
                &ws.name,
                &ws.root,
                &ws.gopls_env,
                &ws.gopls_settings,
                ws.memory,
            );
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
        memory: MemoryConfig,
    ) {
        let mut effective_settings = self.server_settings.clone();
        effective_settings.extend(settings.iter().map(|(k, v)| (k.clone(), v.clone())));
        let workspace = Workspace {
            name: name.to_owned(),
            root: root.to_path_buf(),
            env: effective_env(&self.server_env, env),
            settings: effective_settings,
            memory,
            start_lock: tokio::sync::Mutex::new(()),
            current: Mutex::new(None),
            pacer: Mutex::new(RestartPacer::new(self.restart_rules)),
            last_start_failed: std::sync::atomic::AtomicBool::new(false),
            restart_reasons: Mutex::new(HashMap::new()),
            oom_kills_total: AtomicU64::new(0),
            last_exit: Mutex::new(None),
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
                self.insert(
                    &name,
                    &root,
                    &BTreeMap::new(),
                    &GoplsSettings::new(),
                    self.server_memory,
                );
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
