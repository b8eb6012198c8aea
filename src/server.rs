//! Binding and running: `Server::bind` (port 0 allowed) → `port()` →
//! `run(shutdown)`. Shutdown drains: in-flight requests finish, then `run`
//! returns. With `metrics_listen` set, `/metrics` is served on that second
//! address alone.

use std::future::Future;
use std::net::SocketAddr;

use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::app::App;
use crate::config::Config;

async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

pub struct Server {
    listener: TcpListener,
    metrics: Option<TcpListener>,
    app: App,
}

/// The addresses a server answers on, taken before it starts.
pub struct Listeners {
    main: TcpListener,
    metrics: Option<TcpListener>,
}

impl Server {
    pub async fn bind(app: App) -> anyhow::Result<Self> {
        let listeners = Self::listen(&app.config).await?;
        Ok(Self::on(listeners, app))
    }

    /// Takes the addresses (`listen`, and `metrics_listen` if set) before
    /// anything else starts, so that a port in use stops the server before
    /// it writes anything (a generated operator key, say).
    pub async fn listen(config: &Config) -> anyhow::Result<Listeners> {
        let main = bind(&config.listen).await?;
        let metrics = match &config.metrics_listen {
            Some(addr) => Some(bind(addr).await.context("metrics_listen")?),
            None => None,
        };
        Ok(Listeners { main, metrics })
    }

    /// A server for `app` on the listeners [`Server::listen`] took.
    pub fn on(listeners: Listeners, app: App) -> Self {
        Self {
            listener: listeners.main,
            metrics: listeners.metrics,
            app,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The `metrics_listen` address, once bound.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = self.app.clone();
        // Webhooks are delivered by serving nodes only (not by the CLI).
        let webhooks = crate::service::webhooks::spawn_worker(app.clone())?;
        let router = crate::http::router(self.app);
        let realtime = app.realtime_shutdown.clone();
        let metrics_done = tokio_util::sync::CancellationToken::new();
        let metrics = self.metrics.map(|listener| {
            let done = metrics_done.clone();
            let routes = crate::http::meta::metrics_router(app.clone());
            tokio::spawn(async move {
                let served = axum::serve(listener, routes)
                    .with_graceful_shutdown(done.cancelled_owned())
                    .await;
                if let Err(e) = served {
                    tracing::warn!(error = %e, "the metrics listener stopped");
                }
            })
        });
        // hyper directly (not `axum::serve`), for a header-read timeout: a
        // client that trickles its headers (slowloris) is cut off.
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(
                app.config.header_read_timeout_secs.max(1),
            ));
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off, go on.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    // The peer address goes into each request's extensions
                    // (what `ConnectInfo` reads). Not `router.layer(…)` per
                    // connection: that rebuilds every route, and was a sixth
                    // of the server's CPU while opening WebSocket connections.
                    let router = router.clone();
                    let service = hyper::service::service_fn(
                        move |mut req: hyper::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(ConnectInfo(peer));
                            router.clone().oneshot(req)
                        },
                    );
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn.into_owned());
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(self.listener);
        metrics_done.cancel();
        if let Some(task) = metrics {
            let _ = task.await;
        }
        // WebSocket connections are detached from hyper once upgraded: tell
        // them to close (1001) ourselves, then wait for them below.
        realtime.cancel();
        if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("some requests did not finish within 30 s");
        }
        app.realtime_tasks.close();
        if tokio::time::timeout(
            std::time::Duration::from_secs(10),
            app.realtime_tasks.wait(),
        )
        .await
        .is_err()
        {
            tracing::warn!("some realtime connections did not close within 10 s");
        }
        // An attempt takes at most 10 s (its timeout); then its record.
        webhooks.stop(Duration::from_secs(15)).await;
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received, draining");
}
