//! The collector's HTTP API (see docs/protocol.md).

use crate::Collector;
use crate::writer::new_message;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use herald_common::envelope::{Invalid, Submission, user_stream, valid_user_id};
use herald_common::http::{ApiError, require_api_key};
use herald_common::store::{Appended, Outcome};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

type Shared = State<Arc<Collector>>;
type Answer = Result<(StatusCode, Json<Value>), ApiError>;

pub fn router(collector: Arc<Collector>) -> Router {
    Router::new()
        .route("/v1/messages", post(submit_one))
        .route("/v1/messages/batch", post(submit_batch))
        .route("/v1/messages/{id}", get(message_status))
        .route("/v1/streams/{user}/messages", get(read_stream))
        .layer(DefaultBodyLimit::max(collector.config.max_body_bytes))
        .with_state(collector)
}

fn invalid(e: Invalid) -> ApiError {
    if e.is_too_large() {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
    } else {
        ApiError::bad_request(e.to_string())
    }
}

fn body_error(e: BytesRejection) -> ApiError {
    ApiError::new(e.status(), "bad_body", e.body_text())
}

/// Why a message whose id is taken was not stored.
fn conflict_message(a: &Appended) -> String {
    format!(
        "`id` {} is already the id of a different message; nothing was stored",
        a.id
    )
}

fn appended_json(a: &Appended) -> Value {
    match a.outcome {
        Outcome::Stored => json!({"id": a.id, "recipients": a.recipients}),
        Outcome::Duplicate => json!({"id": a.id, "recipients": a.recipients, "duplicate": true}),
        Outcome::Conflict => {
            json!({"id": a.id, "error": "conflict", "message": conflict_message(a)})
        }
    }
}

/// Counts refusals, so an operator sees a misbehaving producer.
fn counted<T>(c: &Collector, result: Result<T, ApiError>) -> Result<T, ApiError> {
    if let Err(e) = &result
        && e.status.is_client_error()
    {
        c.metrics.rejected_http.inc();
    }
    result
}

async fn submit_one(
    State(c): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let submission = counted(
        &c,
        (|| {
            require_api_key(&headers, &c.config.api_key)?;
            let body = body.map_err(body_error)?;
            Submission::parse(&body, &c.config.limits).map_err(invalid)
        })(),
    )?;
    let appended = c
        .writer
        .append(vec![new_message(submission)])
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    record(&c, &appended);
    let answer = &appended[0];
    if answer.is_conflict() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            conflict_message(answer),
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(appended_json(answer))))
}

async fn submit_batch(
    State(c): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let submissions = counted(
        &c,
        (|| {
            require_api_key(&headers, &c.config.api_key)?;
            let body = body.map_err(body_error)?;
            let batch = Submission::parse_batch(&body, &c.config.limits).map_err(invalid)?;
            if batch.is_empty() {
                return Err(ApiError::bad_request("the batch is empty"));
            }
            Ok(batch)
        })(),
    )?;
    let appended = c
        .writer
        .append(submissions.into_iter().map(new_message).collect())
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    record(&c, &appended);
    let messages: Vec<Value> = appended.iter().map(appended_json).collect();
    Ok((StatusCode::ACCEPTED, Json(json!({"messages": messages}))))
}

/// Counts each message's outcome; a conflict is a refused message.
fn record(c: &Collector, appended: &[Appended]) {
    let count = |outcome| appended.iter().filter(|a| a.outcome == outcome).count() as u64;
    c.metrics.accepted.inc_by(count(Outcome::Stored));
    c.metrics.duplicates.inc_by(count(Outcome::Duplicate));
    c.metrics.rejected_http.inc_by(count(Outcome::Conflict));
}

async fn message_status(State(c): Shared, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    counted(&c, require_api_key(&headers, &c.config.api_key))?;
    let status = c
        .store
        .message_status(&id)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .ok_or_else(|| ApiError::not_found(format!("no message with id {id}")))?;
    let recipients: Vec<Value> = status
        .recipients
        .iter()
        .map(|r| {
            json!({
                "user": herald_common::envelope::stream_user(&r.stream),
                "stream": r.stream,
                "seq": r.seq,
                "stored": true,
                "delivered": r.delivered,
                "acked": r.acked,
            })
        })
        .collect();
    Ok((
        StatusCode::OK,
        Json(json!({
            "id": status.id,
            "ts": status.ts,
            "from": status.from,
            "payload": status.payload,
            "published": status.published,
            "recipients": recipients,
        })),
    ))
}

#[derive(Deserialize)]
struct ReadQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<usize>,
}

/// Most entries one page returns.
const MAX_PAGE: usize = 1000;

async fn read_stream(
    State(c): Shared,
    headers: HeaderMap,
    Path(user): Path<String>,
    query: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let Query(query) = counted(
        &c,
        (|| {
            require_api_key(&headers, &c.config.api_key)?;
            if !valid_user_id(&user, &c.config.limits) {
                return Err(ApiError::bad_request("invalid user id"));
            }
            query.map_err(|e| ApiError::bad_request(e.body_text()))
        })(),
    )?;
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let stream = user_stream(&user);
    let unavailable = |e: herald_common::store::StoreError| ApiError::unavailable(e.to_string());
    let info = c.store.stream_info(&stream).await.map_err(unavailable)?;
    let entries = c
        .store
        .read_stream(&stream, query.after, limit)
        .await
        .map_err(unavailable)?;
    let messages: Vec<Value> = entries
        .iter()
        .map(
            |e| json!({"id": e.id, "seq": e.seq, "ts": e.ts, "from": e.from, "payload": e.payload}),
        )
        .collect();
    let mut answer = json!({
        "stream": "user",
        "epoch": info.epoch,
        "first": info.first,
        "head": info.head,
        "messages": messages,
    });
    // Messages after `after` have expired: the reader missed some for good
    // and must reload rather than believe it is up to date.
    if query.after + 1 < info.first {
        answer["reset"] = json!({"from": info.first});
    }
    Ok((StatusCode::OK, Json(answer)))
}
