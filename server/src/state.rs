//! State shared by every transport: configuration, workspaces, tokens, the
//! gopls binary, and the shutdown signal; plus opening a session, which
//! every transport does the same way.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use remote_gopls_proto::pb;
use remote_gopls_proto::urimap::{Root, UriMapper};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthError, Tokens};
use crate::config::Config;
use crate::metrics::{Metrics, Transport};
use crate::session::Session;
use crate::workspace::{LaunchContext, Registry};

/// Shared server state.
#[derive(Debug)]
pub struct ServerState {
    pub config: Config,
    pub tokens: Tokens,
    pub registry: Registry,
    pub launch: LaunchContext,
    pub shutdown: CancellationToken,
    /// Sum of instance memory limits allowed at once.
    pub memory_budget: crate::bytesize::ByteSize,
    /// Serializes budget checks with the starts they allow.
    budget_lock: tokio::sync::Mutex<()>,
    pub metrics: Arc<Metrics>,
    /// Session tasks of every transport; shutdown waits for them.
    pub sessions: TaskTracker,
    /// Set once both listeners accept connections.
    listening: AtomicBool,
    next_session: AtomicU64,
}

/// Reason a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("workspace {name:?} not found; this server serves: {available}")]
    UnknownWorkspace { name: String, available: String },
    #[error("invalid hello: {0}")]
    InvalidHello(String),
    #[error("gopls for workspace {workspace:?} is unavailable: {detail}")]
    GoplsUnavailable { workspace: String, detail: String },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Budget(#[from] crate::controller::budget::BudgetExceeded),
}

/// A session ready to run: its settings, its gopls connection and the
/// welcome message for the editor.
#[derive(Debug)]
pub struct OpenSession {
    pub session: Session,
    pub socket: UnixStream,
    pub welcome: pb::Welcome,
}

impl ServerState {
    /// Builds the state. `memory_budget` must be resolved before cgroup
    /// detection moves the server into a leaf group, whose own limit is unset.
    pub fn new(
        config: Config,
        registry: Registry,
        launch: LaunchContext,
        shutdown: CancellationToken,
        memory_budget: crate::bytesize::ByteSize,
    ) -> ServerState {
        ServerState {
            memory_budget,
            budget_lock: tokio::sync::Mutex::new(()),
            tokens: config.tokens.clone(),
            config,
            registry,
            metrics: launch.metrics.clone(),
            launch,
            shutdown,
            sessions: TaskTracker::new(),
            listening: AtomicBool::new(false),
            next_session: AtomicU64::new(1),
        }
    }

    /// Marks both listeners as accepting connections.
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }

    /// Checks whether the server can take new sessions: both listeners
    /// accept, the gopls binary is still there, and no shutdown has begun.
    pub fn readiness(&self) -> Result<(), String> {
        if self.shutdown.is_cancelled() {
            return Err("the server is shutting down".to_owned());
        }
        if !self.listening.load(Ordering::SeqCst) {
            return Err("the listeners are not accepting connections yet".to_owned());
        }
        let gopls = &self.launch.gopls.path;
        if !gopls.is_file() {
            return Err(format!("gopls binary {} not found", gopls.display()));
        }
        Ok(())
    }

    /// Authenticates a session, finds its workspace, starts gopls if needed
    /// and connects to it.
    pub async fn open_session(
        &self,
        hello: &pb::Hello,
        token: Option<&str>,
        transport: Transport,
    ) -> Result<OpenSession, OpenError> {
        if self.shutdown.is_cancelled() {
            return Err(OpenError::ShuttingDown);
        }
        self.tokens.authorize(token, &hello.workspace)?;

        let workspace =
            self.registry
                .get(&hello.workspace)
                .ok_or_else(|| OpenError::UnknownWorkspace {
                    name: hello.workspace.clone(),
                    available: self.registry.names().join(", "),
                })?;

        let to_remote = if hello.local_root.is_empty() {
            None
        } else {
            let local = Root::parse(&hello.local_root)
                .map_err(|e| OpenError::InvalidHello(e.to_string()))?;
            let remote = Root::parse(&workspace.root.to_string_lossy())
                .map_err(|e| OpenError::InvalidHello(e.to_string()))?;
            Some(UriMapper::new(local, remote))
        };

        let unavailable = |detail: String| OpenError::GoplsUnavailable {
            workspace: workspace.name.clone(),
            detail,
        };
        // A new session is a request to try again after a crash loop.
        workspace.reset_degraded();
        let instance = self
            .instance_within_budget(&workspace)
            .await?
            .map_err(|e| unavailable(e.to_string()))?;
        let socket = instance
            .connect()
            .await
            .map_err(|e| unavailable(e.to_string()))?;

        let id = format!(
            "s{}-{}",
            self.next_session.fetch_add(1, Ordering::Relaxed),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let sessions = instance.session_opened();
        let gauge = SessionGauge::new(self.metrics.clone(), transport);
        tracing::info!(
            session.id = %id,
            workspace.name = %workspace.name,
            transport = transport.as_str(),
            gopls.pid = instance.pid,
            local_root = %hello.local_root,
            client = %hello.client_version,
            sessions,
            "session opened"
        );

        let welcome = pb::Welcome {
            session_id: id.clone(),
            remote_root: workspace.root.to_string_lossy().into_owned(),
            gopls_version: self.launch.gopls.version.clone(),
            server_version: remote_gopls_proto::VERSION.to_owned(),
        };
        let session = Session {
            id,
            workspace: workspace.clone(),
            launch: self.launch.clone(),
            instance,
            to_remote,
            default_settings: workspace.settings.clone(),
            max_message_size: self.config.max_message_size,
            shutdown: self.shutdown.child_token(),
            transport,
            metrics: self.metrics.clone(),
            gauge,
        };
        Ok(OpenSession {
            session,
            socket,
            welcome,
        })
    }
}

impl ServerState {
    /// Returns the workspace's running instance, or starts one after making
    /// room for it within the memory budget. The outer error is the budget;
    /// the inner one is gopls failing to start.
    pub async fn instance_within_budget(
        &self,
        workspace: &Arc<crate::workspace::Workspace>,
    ) -> Result<Result<Arc<crate::instance::Instance>, crate::instance::InstanceError>, OpenError>
    {
        if let Some(instance) = workspace.running() {
            return Ok(Ok(instance));
        }
        let _budget = self.budget_lock.lock().await;
        crate::controller::budget::ensure(
            &self.registry,
            workspace,
            self.memory_budget,
            self.config.gopls_stop_grace,
            &self.metrics,
        )
        .await?;
        Ok(workspace.instance(&self.launch).await)
    }
}

/// Counts a session in the sessions gauge of its transport until it is
/// dropped, however the session ends.
#[derive(Debug)]
pub struct SessionGauge {
    metrics: Arc<Metrics>,
    transport: Transport,
}

impl SessionGauge {
    pub fn new(metrics: Arc<Metrics>, transport: Transport) -> SessionGauge {
        metrics.session_opened(transport);
        SessionGauge { metrics, transport }
    }
}

impl Drop for SessionGauge {
    fn drop(&mut self) {
        self.metrics.session_closed(self.transport);
        tracing::info!(
            transport = self.transport.as_str(),
            "session detached from gopls"
        );
    }
}
