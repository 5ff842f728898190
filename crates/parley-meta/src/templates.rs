//! Template management and the Resumable Upload API: create (`POST /{waba}/message_templates`),
//! edit (`POST /{template-id}`), delete (`DELETE /{waba}/message_templates?name=[&hsm_id=]`),
//! read one (`GET /{template-id}`), and the two-step upload that turns a file into the
//! `header_handle` a media header's example needs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::GraphClient;
use crate::error::GraphError;

/// Fields Parley reads of a template (list and single reads).
pub const TEMPLATE_FIELDS: &str = "id,name,language,category,status,parameter_format,components,quality_score,rejected_reason,previous_category,correct_category";

/// Answer to a template creation: `{"id","status","category"}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct CreatedTemplate {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Success {
    #[serde(default)]
    success: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct UploadSession {
    id: String,
}

#[derive(Debug, Clone, Deserialize)]
struct UploadHandle {
    h: String,
}

#[derive(Debug, Clone, Deserialize)]
struct DebugToken {
    data: DebugTokenData,
}

#[derive(Debug, Clone, Deserialize)]
struct DebugTokenData {
    #[serde(default)]
    app_id: Option<String>,
}

fn unexpected(what: &str) -> GraphError {
    GraphError::Decode {
        http_status: 200,
        detail: format!("Meta answered without {what}"),
    }
}

impl GraphClient {
    /// `POST /{waba-id}/message_templates` with Meta's template JSON.
    pub async fn create_template(
        &self,
        token: &str,
        waba_id: &str,
        template: &Value,
    ) -> Result<CreatedTemplate, GraphError> {
        let req = self
            .http
            .post(self.url(&format!("{waba_id}/message_templates")))
            .bearer_auth(token)
            .json(template);
        self.execute(req).await
    }

    /// `POST /{template-id}` with `category` and/or `components` (components replace all).
    pub async fn edit_template(
        &self,
        token: &str,
        template_id: &str,
        changes: &Value,
    ) -> Result<(), GraphError> {
        let req = self
            .http
            .post(self.url(template_id))
            .bearer_auth(token)
            .json(changes);
        let answer: Success = self.execute(req).await?;
        if answer.success {
            Ok(())
        } else {
            Err(unexpected("`success: true`"))
        }
    }

    /// `DELETE /{waba-id}/message_templates?name=…[&hsm_id=…]`: every language of the name, or
    /// only the template with that id.
    pub async fn delete_template(
        &self,
        token: &str,
        waba_id: &str,
        name: &str,
        hsm_id: Option<&str>,
    ) -> Result<(), GraphError> {
        let mut query = vec![("name", name)];
        if let Some(id) = hsm_id {
            query.push(("hsm_id", id));
        }
        let req = self
            .http
            .delete(self.url(&format!("{waba_id}/message_templates")))
            .bearer_auth(token)
            .query(&query);
        let answer: Success = self.execute(req).await?;
        if answer.success {
            Ok(())
        } else {
            Err(unexpected("`success: true`"))
        }
    }

    /// `GET /{template-id}` with [`TEMPLATE_FIELDS`].
    pub async fn get_template(&self, token: &str, template_id: &str) -> Result<Value, GraphError> {
        let req = self
            .http
            .get(self.url(template_id))
            .bearer_auth(token)
            .query(&[("fields", TEMPLATE_FIELDS)]);
        self.execute(req).await
    }

    /// The Meta app a token belongs to (`GET /debug_token?input_token=`, asked with the token
    /// itself), needed for `/{app-id}/uploads`.
    pub async fn app_id_of_token(&self, token: &str) -> Result<String, GraphError> {
        let req = self
            .http
            .get(self.url("debug_token"))
            .bearer_auth(token)
            .query(&[("input_token", token)]);
        let answer: DebugToken = self.execute(req).await?;
        answer
            .data
            .app_id
            .ok_or_else(|| unexpected("`data.app_id`"))
    }

    /// The Resumable Upload API in one go: `POST /{app-id}/uploads?file_name&file_length&file_type`
    /// opens a session (`{"id":"upload:…"}`), `POST /{upload-id}` with `file_offset: 0` sends
    /// the bytes and returns the handle (`{"h":"4::…"}`) a template's `header_handle` takes.
    pub async fn upload_file(
        &self,
        token: &str,
        app_id: &str,
        file_name: &str,
        mime_type: &str,
        bytes: bytes::Bytes,
    ) -> Result<String, GraphError> {
        let length = bytes.len().to_string();
        let req = self
            .http
            .post(self.url(&format!("{app_id}/uploads")))
            .bearer_auth(token)
            .query(&[
                ("file_name", file_name),
                ("file_length", length.as_str()),
                ("file_type", mime_type),
            ]);
        let session: UploadSession = self.execute(req).await?;
        if !session.id.starts_with("upload:") {
            return Err(unexpected("an `upload:` session id"));
        }
        // Meta documents `Authorization: OAuth <token>` for this step.
        let req = self
            .http
            .post(self.url(&session.id))
            .header("authorization", format!("OAuth {token}"))
            .header("file_offset", "0")
            .header("content-type", mime_type)
            .body(bytes);
        let handle: UploadHandle = self.execute(req).await?;
        Ok(handle.h)
    }
}
