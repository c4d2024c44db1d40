//! The PR plan's one comment on the forge: found again by its hidden marker (every page of the
//! request's comments is read) and edited in place, or created when there is none yet.

use std::time::Instant;

use berth_core::prcomment::MARKER;
use reqwest::Method;
use serde_json::json;

use crate::forge::{Api, ApiError};

/// Where a request's comments live on one forge.
pub struct Thread {
    pub api: Api,
    /// `owner/name`, or GitLab's project id (numeric or URL-encoded path).
    pub project: String,
    pub number: u64,
}

/// What happened to the comment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Posted {
    /// `created` or `edited`.
    pub how: &'static str,
    pub id: Option<u64>,
}

impl Thread {
    /// The list (POST to create) path and the path of one comment (PATCH/PUT to edit).
    fn paths(&self, id: Option<u64>) -> (String, String) {
        let (p, n) = (&self.project, self.number);
        let id = id.unwrap_or(0);
        match self.api.provider.as_str() {
            "gitlab" => (
                format!("/api/v4/projects/{p}/merge_requests/{n}/notes"),
                format!("/api/v4/projects/{p}/merge_requests/{n}/notes/{id}"),
            ),
            "gitea" | "forgejo" => {
                (format!("/api/v1/repos/{p}/issues/{n}/comments"), format!("/api/v1/repos/{p}/issues/comments/{id}"))
            }
            _ => (format!("/repos/{p}/issues/{n}/comments"), format!("/repos/{p}/issues/comments/{id}")),
        }
    }

    /// The id of berth's comment on this request, if there is one.
    async fn find(
        &self,
        client: &reqwest::Client,
        deadline: Instant,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Option<u64>, ApiError> {
        let (list, _) = self.paths(None);
        let page = match self.api.provider.as_str() {
            "gitlab" => "?per_page=100&sort=asc",
            "gitea" | "forgejo" => "?limit=50",
            _ => "?per_page=100",
        };
        let all = self
            .api
            .get_all(client, &format!("{list}{page}"), |v| v.as_array().cloned().unwrap_or_default(), deadline, log)
            .await?;
        Ok(all
            .iter()
            .find(|c| c["body"].as_str().is_some_and(|b| b.starts_with(MARKER)))
            .and_then(|c| c["id"].as_u64()))
    }

    /// Edit berth's comment to `body`, or create it.
    pub async fn upsert(
        &self,
        client: &reqwest::Client,
        body: &str,
        deadline: Instant,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Posted, ApiError> {
        let payload = json!({ "body": body });
        if let Some(id) = self.find(client, deadline, log).await? {
            let method = if self.api.provider == "gitlab" { Method::PUT } else { Method::PATCH };
            let (_, one) = self.paths(Some(id));
            match self.api.write(client, method, &one, &payload, deadline, log).await {
                Ok(_) => return Ok(Posted { how: "edited", id: Some(id) }),
                // Someone else's comment carrying the marker: leave it, write berth's own.
                Err(ApiError::Refused(why)) => log(&format!("cannot edit comment {id} ({why}); writing a new one")),
                Err(e) => return Err(e),
            }
        }
        let (list, _) = self.paths(None);
        let mut pause = std::time::Duration::from_millis(500);
        loop {
            match self.api.create(client, &list, &payload, deadline, log).await {
                Ok(created) => return Ok(Posted { how: "created", id: created["id"].as_u64() }),
                // The answer may be lost while the comment was made: look before posting again.
                Err(ApiError::GaveUp(why)) if Instant::now() + pause < deadline => {
                    log(&format!("{why}; looking for the comment before posting again"));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(15));
                    if let Some(id) = self.find(client, deadline, log).await? {
                        let method = if self.api.provider == "gitlab" { Method::PUT } else { Method::PATCH };
                        let (_, one) = self.paths(Some(id));
                        self.api.write(client, method, &one, &payload, deadline, log).await?;
                        return Ok(Posted { how: "edited", id: Some(id) });
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
