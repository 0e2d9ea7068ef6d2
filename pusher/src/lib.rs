//! pusher: a push node. It holds WebSocket connections, keeps their users'
//! routes in the registry, consumes only its own node topic, and writes each
//! event to the local connections of its recipient, replaying from the store
//! whatever a connection missed.

pub mod auth;
mod bucket;
mod config;
mod connection;
mod cursor;
mod frames;
mod hub;
mod metrics;
mod node_topic;
mod progress;
mod publish;
mod registration;

use auth::{AuthClient, AuthError, Verifier};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herald_cluster::{KafkaConfig, KafkaLog, MongoStore, RedisConfig, RedisRoutes};
use herald_common::http::{ApiError, Service, bearer, shutdown_signal};
use herald_common::listener::Listener;
use herald_common::log::Log;
use herald_common::metrics::Registry;
use herald_common::routes::RouteRegistry;
use herald_common::store::MessageStore;
use hub::Hub;
use progress::Progress;
use registration::{Leases, Registrar};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub use config::{Config, Flags};
pub use connection::close;

/// Everything a connection needs from its node.
pub(crate) struct Node {
    config: Config,
    hub: Arc<Hub>,
    registrar: Registrar,
    store: Arc<dyn MessageStore>,
    progress: Arc<Progress>,
    auth: Arc<dyn Verifier>,
    /// Client publishes go to the ingest topic through this log.
    log: Arc<dyn Log>,
    ingest_topic: String,
    limits: herald_common::envelope::Limits,
    ready: watch::Receiver<bool>,
    /// Turns true when the process is asked to stop: every connection then
    /// closes (1012) so its client reconnects to another node at once.
    shutdown: watch::Sender<bool>,
}

/// Runs a push node on Kafka, Redis and MongoDB, asking authsvc over HTTP,
/// until the process is asked to stop.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let names = config.infra.names();
    let log: Arc<dyn Log> = Arc::new(KafkaLog::connect(KafkaConfig::from(&config.infra))?);
    let routes: Arc<dyn RouteRegistry> =
        Arc::new(RedisRoutes::connect(&RedisConfig::from(&config.infra), names.clone()).await?);
    let store: Arc<dyn MessageStore> =
        Arc::new(MongoStore::connect(&config.infra.mongo_uri, &names.database()).await?);
    let verifier: Arc<dyn Verifier> = Arc::new(AuthClient::new(&config.auth_url));
    let registry = Registry::default();
    let service = start(
        config.clone(),
        log,
        routes.clone(),
        store,
        verifier,
        &registry,
    )
    .await?;

    let listener = Listener::bind(config.addr, &config.tls).await?;
    tracing::info!(addr = %listener.local_addr()?, scheme = listener.scheme(), node = %config.node_id, "pusher listening");
    listener
        .serve(service.into_router(), async move {
            shutdown_signal().await;
            // Tell dispatchers at once rather than after the lease: clients
            // reconnect elsewhere and their new routes take over.
            let _ = routes.node_gone(&config.node_id).await;
        })
        .await
}

/// Starts a push node on the given log, route registry, store and token verifier,
/// its metrics in the process's metrics `registry`, and returns the node as a
/// service at once: it creates and joins its topic in the background, and is
/// ready (accepts connections) once it reads that topic.
pub async fn start(
    config: Config,
    log: Arc<dyn Log>,
    routes: Arc<dyn RouteRegistry>,
    store: Arc<dyn MessageStore>,
    verifier: Arc<dyn Verifier>,
    registry: &Registry,
) -> anyhow::Result<Service> {
    let names = config.infra.names();
    let leases = Leases {
        ttl: Duration::from_secs(config.route_ttl_secs),
    };
    // Alive before the first route, so no dispatcher discards our routes.
    if let Err(e) = routes.node_heartbeat(&config.node_id, leases.ttl).await {
        tracing::warn!(error = %e, "registry unreachable at start; the heartbeat will retry");
    }
    // Ready (accepting connections) once the node reads its own topic.
    let (assigned, ready) = watch::channel(false);

    let hub = Arc::new(Hub::default());
    let registrar = registration::spawn(routes, hub.clone(), config.node_id.clone(), leases);
    let progress = Arc::new(Progress::default());
    progress::spawn(progress.clone(), store.clone(), Duration::from_secs(1));
    let subscription = node_topic::subscription(&names, &config.node_id, registry);
    let mut node_topic = node_topic::NodeTopic {
        hub: hub.clone(),
        metrics: Arc::new(metrics::Metrics::register(registry, &hub)),
    };
    let topic_log = log.clone();
    tokio::spawn(async move { subscription.run(topic_log, assigned, &mut node_topic).await });

    let node = Arc::new(Node {
        auth: verifier,
        log: log.clone(),
        ingest_topic: names.ingest_topic(),
        limits: config.limits.clone(),
        config: config.clone(),
        hub: hub.clone(),
        registrar,
        store,
        progress,
        ready: ready.clone(),
        shutdown: watch::Sender::new(false),
    });
    let closing = node.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        closing.shutdown.send_replace(true);
    });
    let mut api = Router::new()
        .route("/ws", get(upgrade))
        .route("/client.js", get(client_js))
        .with_state(node);
    if config.demo_page {
        api = api.route("/", get(demo_page));
    }
    Ok(Service {
        api,
        ready,
        metrics: registry.clone(),
    })
}

/// The JavaScript client library (web/client.js), served so that pages load
/// the version that matches the server.
async fn client_js() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/javascript; charset=utf-8",
        )],
        include_str!("../../web/client.js"),
    )
}

/// The demo page (web/index.html).
async fn demo_page() -> impl IntoResponse {
    axum::response::Html(include_str!("../../web/index.html"))
}

#[derive(Deserialize)]
struct WsQuery {
    token: Option<String>,
    since: Option<u64>,
    epoch: Option<String>,
}

/// Read buffer of a connection: client frames are small, and a large buffer
/// per idle connection is what makes WebSocket servers fat. It grows for a
/// large frame and shrinks back.
const READ_BUFFER: usize = 1024;

async fn upgrade(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return ApiError::bad_request(e.body_text()).into_response(),
    };
    let Some(token) = bearer(&headers).or(query.token.as_deref()) else {
        return ApiError::unauthorized(
            "missing token: `Authorization: Bearer <token>` or `?token=`",
        )
        .into_response();
    };
    if !*node.ready.borrow() {
        return ApiError::unavailable("node is starting").into_response();
    }
    let identity = match node.auth.verify(token).await {
        Ok(identity) => identity,
        Err(AuthError::Rejected(reason)) => return ApiError::unauthorized(reason).into_response(),
        Err(e @ AuthError::Unavailable(_)) => {
            return ApiError::unavailable(e.to_string()).into_response();
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    let start = connection::Start {
        since: query.since,
        epoch: query.epoch,
    };
    ws.read_buffer_size(READ_BUFFER)
        // Frames go straight to the socket: no per-connection write buffer.
        .write_buffer_size(0)
        .max_message_size(node.config.max_client_frame)
        .max_frame_size(node.config.max_client_frame)
        .on_upgrade(move |socket| connection::serve(socket, node, identity, start))
}
