//! remote-gopls-server: runs one shared gopls per workspace and serves
//! editor sessions over gRPC and WebSocket, with health and metrics on the
//! HTTP listener.
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
pub mod metrics;
pub mod session;
pub mod state;
pub mod status;
pub mod workspace;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, WorkspaceConfig};
use crate::metrics::Metrics;
use crate::state::ServerState;
use crate::workspace::{LaunchContext, Registry};

/// How long each listener gets to finish its graceful shutdown once the
/// sessions are gone, before the server stops waiting for it.
const LISTENER_STOP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Gopls(#[from] gopls::GoplsError),
    #[error("failed to bind {listener} listener on {addr}: {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("{listener} listener task failed: {detail}")]
    Listener {
        listener: &'static str,
        detail: String,
    },
}

/// A bound, ready server.
#[derive(Debug)]
pub struct Server {
    state: Arc<ServerState>,
    listener: TcpListener,
    http_listener: TcpListener,
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

        // The server's own cgroup limit is read before cgroup detection, which
        // may move the server into a leaf group without a limit of its own.
        let memory_budget = controller::budget::resolve(
            config.controller.memory_budget,
            config.controller.budget_fraction,
        );
        tracing::info!(budget = %memory_budget, "memory budget for gopls instances");

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
            metrics: Arc::new(Metrics::new()),
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

        let bind = |listener: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind {
                    listener,
                    addr,
                    source,
                })
        };
        let listener = bind("gRPC", config.listen).await?;
        let http_listener = bind("HTTP", config.http_listen).await?;
        let state = Arc::new(ServerState::new(
            config,
            registry,
            launch,
            CancellationToken::new(),
            memory_budget,
        ));
        Ok(Server {
            state,
            listener,
            http_listener,
        })
    }

    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http_listener.local_addr()
    }

    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// Serves until `shutdown` completes or a listener fails. Then both
    /// listeners stop accepting, open sessions get `shutdown_grace` to
    /// finish, and every gopls process is stopped.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let state = self.state.clone();
        let addresses = [
            ("gRPC", self.listener.local_addr()),
            ("HTTP", self.http_listener.local_addr()),
        ];

        let token = state.shutdown.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested, draining sessions");
            token.cancel();
        });

        let controller = tokio::spawn(controller::run(state.clone()));

        // The keepalive interval doubles as the timeout: a peer gets one
        // interval to answer a ping, as on WebSocket connections.
        let keepalive = state.config.ws_ping_interval;
        let service = api::grpc::TunnelService::new(state.clone()).into_server();
        let mut grpc = tokio::spawn(
            tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(keepalive))
                .http2_keepalive_timeout(Some(keepalive))
                .add_service(service)
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(self.listener),
                    state.shutdown.clone().cancelled_owned(),
                ),
        );
        let router = api::http::router(state.clone());
        let mut http = tokio::spawn(
            axum::serve(self.http_listener, router)
                .with_graceful_shutdown(state.shutdown.clone().cancelled_owned())
                .into_future(),
        );
        state.set_listening();
        // Logged only now, so a process waiting for these lines finds /readyz ready.
        for (name, address) in addresses {
            match address {
                Ok(addr) => tracing::info!(address = %addr, "{name} listening"),
                Err(e) => tracing::warn!(error = %e, "{name} listening on an unknown address"),
            }
        }

        // A listener that fails ends the server the same way a signal does.
        let mut failure = None;
        tokio::select! {
            _ = state.shutdown.cancelled() => {}
            ended = &mut grpc => {
                failure = Some(listener_result("gRPC", ended.map(|r| r.map_err(ServerError::from))));
                grpc = tokio::spawn(async { Ok(()) });
            }
            ended = &mut http => {
                failure = Some(listener_result("HTTP", ended.map(|r| r.map_err(ServerError::Http))));
                http = tokio::spawn(async { Ok(()) });
            }
        }
        state.shutdown.cancel();

        state.sessions.close();
        let grace = state.config.shutdown_grace;
        if tokio::time::timeout(grace, state.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                sessions = state.sessions.len(),
                "sessions still open after the shutdown grace period; stopping gopls under them"
            );
        }
        let _ = tokio::time::timeout(LISTENER_STOP_TIMEOUT, async {
            let _ = (&mut grpc).await;
            let _ = (&mut http).await;
        })
        .await;
        grpc.abort();
        http.abort();

        let _ = controller.await;
        for workspace in state.registry.all() {
            workspace.stop(state.config.gopls_stop_grace).await;
        }
        tracing::info!("server stopped");
        match failure {
            Some(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }
}

/// Turns how a listener task ended into the server's result.
fn listener_result(
    listener: &'static str,
    ended: Result<Result<(), ServerError>, tokio::task::JoinError>,
) -> Result<(), ServerError> {
    match ended {
        Ok(Ok(())) => {
            tracing::warn!("{listener} listener stopped unexpectedly");
            Ok(())
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "{listener} listener failed");
            Err(e)
        }
        Err(join) => Err(ServerError::Listener {
            listener,
            detail: join.to_string(),
        }),
    }
}
