//! remote-gopls-server: runs one shared gopls per workspace and serves
//! editor sessions over gRPC.
//!
//! `main.rs` parses flags, sets up logging and signals, and calls
//! [`Server::bind`] then [`Server::run`]; tests call the same two functions.

pub mod api;
pub mod auth;
pub mod bytesize;
pub mod cgroup;
pub mod config;
pub mod controller;
pub mod demo;
pub mod gopls;
pub mod instance;
pub mod launcher;
pub mod session;
pub mod state;
pub mod status;
pub mod workspace;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, WorkspaceConfig};
use crate::state::ServerState;
use crate::workspace::{LaunchContext, Registry};

/// HTTP/2 keepalive ping interval on gRPC connections, below common proxy
/// and load-balancer idle timeouts.
pub const GRPC_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a keepalive ping may go unanswered before the connection closes.
pub const GRPC_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Gopls(#[from] gopls::GoplsError),
    #[error("failed to bind gRPC listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// A bound, ready server.
#[derive(Debug)]
pub struct Server {
    state: Arc<ServerState>,
    listener: TcpListener,
}

impl Server {
    /// Prepares the data directory, resolves gopls and binds the listener.
    pub async fn bind(mut config: Config) -> Result<Server, ServerError> {
        let data_dir = config.data_dir.clone();
        let data_err = |source| ServerError::DataDir {
            path: data_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&data_dir).map_err(data_err)?;

        if config.workspaces.is_empty() && config.workspaces_dir.is_none() {
            let root = demo::ensure(&data_dir).map_err(data_err)?;
            tracing::info!(workspace.name = config::DEMO_WORKSPACE, root = %root.display(), "no workspace configured, serving the demo module");
            config.workspaces.push(WorkspaceConfig {
                name: config::DEMO_WORKSPACE.to_owned(),
                root,
                gopls_env: Default::default(),
                gopls_settings: Default::default(),
                memory: config.memory,
            });
        }

        let gopls = gopls::resolve(config.gopls.as_deref(), &data_dir).await?;
        tracing::info!(path = %gopls.path.display(), version = %gopls.version, "using gopls");

        let cgroups = {
            let cgroup_config = config.cgroup.clone();
            tokio::task::spawn_blocking(move || {
                let manager = cgroup::CgroupManager::detect(&cgroup_config);
                let removed = manager.cleanup_stale();
                if removed > 0 {
                    tracing::info!(removed, "removed cgroups left by a previous server run");
                }
                manager
            })
            .await
            .expect("cgroup detection task")
        };

        let log_dir = data_dir.join("logs");
        std::fs::create_dir_all(&log_dir).map_err(data_err)?;
        let launch = LaunchContext {
            gopls,
            run_dir: data_dir.join("run"),
            log_dir,
            telemetry_env: launcher::telemetry_off_env(&data_dir).map_err(data_err)?,
            start_timeout: config.gopls_start_timeout,
            cgroups: Arc::new(cgroups),
        };

        let registry = Registry::new(
            &config.workspaces,
            config.workspaces_dir.clone(),
            config.gopls_env.clone(),
            config.gopls_settings.clone(),
            config.memory,
            config.controller.restart_rules,
        );
        tracing::info!(workspaces = ?registry.names(), tokens = config.tokens.len(), "workspaces configured");

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let state = Arc::new(ServerState::new(
            config,
            registry,
            launch,
            CancellationToken::new(),
        ));
        Ok(Server { state, listener })
    }

    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// Serves until `shutdown` completes, then ends every session and stops
    /// every gopls process.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let state = self.state.clone();
        match self.listener.local_addr() {
            Ok(addr) => tracing::info!(address = %addr, "gRPC listening"),
            Err(e) => tracing::warn!(error = %e, "gRPC listening on an unknown address"),
        }

        let token = state.shutdown.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested, closing sessions");
            token.cancel();
        });

        let controller = tokio::spawn(controller::run(state.clone()));

        let service = api::grpc::TunnelService::new(state.clone()).into_server();
        let result = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(GRPC_KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(GRPC_KEEPALIVE_TIMEOUT))
            .add_service(service)
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(self.listener),
                state.shutdown.clone().cancelled_owned(),
            )
            .await;

        let _ = controller.await;
        for workspace in state.registry.all() {
            workspace.stop(state.config.gopls_stop_grace).await;
        }
        tracing::info!("server stopped");
        result.map_err(ServerError::from)
    }
}
